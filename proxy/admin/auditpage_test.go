package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/modgate/modgate/proxy/audit"
)

// TestAuditPages pages through the log with the admin API's cursor.
func TestAuditPages(t *testing.T) {
	f := newAdminFixture(t, nil)
	for i := range 25 {
		if err := f.audit.Append(t.Context(), audit.Entry{Who: "file", Action: audit.PolicyReload, Subject: fmt.Sprint("e", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	before, pages := "", 0
	for {
		var page AuditPage
		path := "/api/v1/audit?limit=10"
		if before != "" {
			path += "&before=" + before
		}
		if code := f.call(t, adminTestToken, "GET", path, "", "", &page); code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		pages++
		var subjects []string
		for _, e := range page.Entries {
			subjects = append(subjects, e.Subject)
		}
		got = append(subjects, got...)
		if page.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		before = page.Next
	}
	want := make([]string, 25)
	for i := range want {
		want[i] = fmt.Sprint("e", i)
	}
	if pages != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%d pages: %v", pages, got)
	}
	var e APIError
	if code := f.call(t, adminTestToken, "GET", "/api/v1/audit?before=nope", "", "", &e); code != http.StatusBadRequest || e.Field != "before" {
		t.Errorf("a bad cursor: %d %+v", code, e)
	}
	b, _ := json.Marshal(AuditPage{Entries: []audit.Entry{}})
	if !strings.Contains(string(b), `"entries":[]`) {
		t.Errorf("empty page %s", b)
	}
}
