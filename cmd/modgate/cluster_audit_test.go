package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/cluster"
	"github.com/modgate/modgate/internal/pgtest"
	"github.com/modgate/modgate/proxy/audit"
)

// TestClusterAuditTableRetention runs the gate's audit log on the cluster
// table: entries list in order from any gate, are rows with columns for
// SQL, and the single-gate retention rules hold (past MaxAge deleted,
// past MaxBytes the oldest deleted).
func TestClusterAuditTableRetention(t *testing.T) {
	ctx := context.Background()
	db, err := cluster.Open(ctx, pgtest.Start(t).NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	table := auditTable{cluster.AuditTable{DB: db}}
	gates := []*audit.Log{
		audit.NewWith(audit.Config{Store: table, MaxAge: 48 * time.Hour, MaxBytes: 8 << 10, Now: clock, Shared: true}),
		audit.NewWith(audit.Config{Store: table, MaxAge: 48 * time.Hour, MaxBytes: 8 << 10, Now: clock, Shared: true}),
	}
	for i := range 4 {
		e := audit.Entry{Who: "token:abc", Action: audit.PolicyAdd, Subject: fmt.Sprintf("old%d", i), Reason: "r"}
		if err := gates[i%2].Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
	}
	advance(72 * time.Hour) // past MaxAge
	for i := range 3 {
		e := audit.Entry{Who: "cert:ops", Action: audit.PolicyRemove, Subject: fmt.Sprintf("new%d", i)}
		if err := gates[i%2].Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		advance(2 * time.Minute) // each append may check the age
	}
	count := func(q string) int {
		var n int
		if err := db.Pool.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("SELECT count(*) FROM modgate_audit WHERE subject LIKE 'old%'"); n != 0 {
		t.Errorf("%d entries past MaxAge are kept", n)
	}
	if n := count("SELECT count(*) FROM modgate_audit WHERE action = 'policy.remove' AND who = 'cert:ops'"); n != 3 {
		t.Errorf("SQL finds %d policy.remove entries, want 3", n)
	}
	list, err := gates[1].List(ctx, 10)
	if err != nil || len(list) != 3 || list[0].Subject != "new0" || list[2].Subject != "new2" {
		t.Fatalf("gate 1 lists %+v, %v; want new0..new2 in order", list, err)
	}
	big := make([]byte, 1500)
	for i := range big {
		big[i] = 'x'
	}
	for i := range 10 {
		e := audit.Entry{Action: audit.PolicyReplace, Subject: fmt.Sprintf("big%d", i), After: string(big)}
		if err := gates[i%2].Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
	}
	// Each gate counts what it wrote itself and measures the shared table
	// again at every age check (each minute): the size bound holds for
	// what all gates wrote from then on.
	advance(2 * time.Minute)
	if err := gates[0].Append(ctx, audit.Entry{Action: audit.PolicyAdd, Subject: "last"}); err != nil {
		t.Fatal(err)
	}
	var bytes int
	if err := db.Pool.QueryRow(ctx, "SELECT coalesce(sum(length(key) + length(entry::text)), 0) FROM modgate_audit").
		Scan(&bytes); err != nil {
		t.Fatal(err)
	}
	if bytes > 8<<10 {
		t.Errorf("the audit table holds %d bytes, over MaxBytes %d", bytes, 8<<10)
	}
	if n := count("SELECT count(*) FROM modgate_audit WHERE subject = 'last'"); n != 1 {
		t.Errorf("the newest entry was deleted")
	}
}
