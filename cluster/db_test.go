package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/modgate/modgate/internal/pgtest"
)

func TestOpenMigratesOnceConcurrently(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.NewDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			db, err := Open(ctx, url, nil)
			if err == nil {
				db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	all, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM modgate_schema").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(all) {
		t.Fatalf("modgate_schema has %d rows, want %d (one per migration)", n, len(all))
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.NewDatabase(t)
	ctx := context.Background()
	db, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "INSERT INTO modgate_schema (version, name) VALUES (9999, '9999_future.sql')"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(ctx, url, nil)
	if !errors.Is(err, ErrSchemaNewer) {
		t.Fatalf("Open on a newer schema: %v, want ErrSchemaNewer", err)
	}
	if !strings.Contains(err.Error(), "9999") {
		t.Errorf("error %q does not name the unknown migration", err)
	}
}

func TestOpenErrorsNeverShowThePassword(t *testing.T) {
	tests := []struct{ name, url string }{
		{"unreachable", "postgres://gate:s3cret-pw@127.0.0.1:1/modgate?sslmode=disable&connect_timeout=2"},
		{"bad option", "postgres://gate:s3cret-pw@127.0.0.1:1/modgate?sslmode=bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.url, nil)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), "s3cret-pw") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}
