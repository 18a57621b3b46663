package audit

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
)

func openAuditCache(t *testing.T) *cache.Store {
	t.Helper()
	c, err := cache.Open(context.Background(), cache.Config{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAuditLogOrderAndLimit(t *testing.T) {
	ctx := context.Background()
	c := openAuditCache(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	log := NewWith(Config{Store: c, Now: func() time.Time { return base }})
	// Entries at one instant, a later one, then a clock step back.
	times := []time.Time{base, base, base.Add(time.Second), base.Add(-time.Hour)}
	for i, tm := range times {
		e := Entry{Time: tm, Who: "token:abcd1234", Action: PolicyAdd, Subject: fmt.Sprint("r", i)}
		if err := log.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	c.Scan(ctx, "audit/", func(k string, _ cache.Entry) error { keys = append(keys, k); return nil })
	if len(keys) != 4 || keys[0] != fmt.Sprintf("audit/%020d-000000", base.UnixNano()) {
		t.Fatalf("keys %q", keys)
	}
	tests := []struct {
		limit int
		want  []string
	}{
		{0, []string{"r0", "r1", "r2", "r3"}},
		{2, []string{"r2", "r3"}},
		{3, []string{"r1", "r2", "r3"}},
		{10, []string{"r0", "r1", "r2", "r3"}},
	}
	for _, tt := range tests {
		got, err := log.List(ctx, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var subjects []string
		for _, e := range got {
			subjects = append(subjects, e.Subject)
		}
		if fmt.Sprint(subjects) != fmt.Sprint(tt.want) {
			t.Errorf("List(%d) = %v, want %v (newest last)", tt.limit, subjects, tt.want)
		}
	}
	got, _ := log.List(ctx, 1)
	if got[0].Who != "token:abcd1234" || got[0].Action != PolicyAdd || !got[0].Time.Equal(base.Add(-time.Hour)) {
		t.Errorf("entry %+v", got[0])
	}
}

func TestAuditLogCorruptEntry(t *testing.T) {
	ctx := context.Background()
	c := openAuditCache(t)
	c.Put(ctx, "audit/00000000000000000001-000000", []byte("{not json"))
	if _, err := New(c).List(ctx, 10); !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("List over a corrupt entry: %v", err)
	}
}
