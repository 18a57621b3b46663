// Package pgtest runs a throwaway PostgreSQL server for tests: a cluster made
// with initdb in a temporary directory, listening on a free loopback port,
// with its socket in that directory, stopped and removed when the test ends.
//
// Where PostgreSQL is not installed, Start skips the test and says why,
// except in CI (CI=true), where it fails: .ci/run installs Debian's
// postgresql package, so the cluster tests always run there.
//
// PostgreSQL refuses to run as root. When the tests run as root, the server
// runs as the "postgres" user that Debian's package creates, in a directory
// that user owns.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is one running PostgreSQL server.
type Server struct {
	bin  string // directory of initdb, pg_ctl and postgres
	dir  string // the temporary directory: data/, the socket, the log
	port int
	cred *syscall.Credential // nil when the tests do not run as root
	dbs  atomic.Int64
}

// Start starts a server for the test and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := findBin()
	if err != nil {
		unavailable(t, err.Error())
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		s.cred, err = postgresUser()
		if err != nil {
			unavailable(t, err.Error())
		}
	}
	// Not t.TempDir: its parent is private to root, and the server's user
	// must be able to enter the directory.
	s.dir, err = os.MkdirTemp("", "modgate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.dir) })
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := s.run("initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	s.port = freePort(t)
	s.Restart(t)
	t.Cleanup(func() { s.stop("fast") })
	return s
}

// URL returns the URL of database db on the server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Port returns the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s.URL(name)
}

// Stop stops the server at once, as a crash would (pg_ctl -m immediate):
// what was committed survives, as PostgreSQL promises.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if out, err := s.stop("immediate"); err != nil {
		t.Fatalf("pgtest: pg_ctl stop: %v\n%s", err, out)
	}
}

// Restart starts the server again on the same port after Stop (Start
// starts it the first time).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=200", s.port, s.dir)
	if out, err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60",
		"-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		t.Fatalf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

func (s *Server) stop(mode string) ([]byte, error) {
	return s.run("pg_ctl", "-D", s.data(), "-m", mode, "-w", "stop")
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
		cmd.Env = append(cmd.Env, "HOME="+s.dir)
	}
	return cmd.CombinedOutput()
}

// findBin finds the newest Debian PostgreSQL, or one on PATH.
func findBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgtest: PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH; " +
		"Debian: apt-get install postgresql)")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the postgres user to run the server: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgtest: postgres user: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: the PostgreSQL tests must run; .ci/run installs postgresql)", why)
	}
	t.Skip(strings.TrimPrefix(why, "pgtest: "))
}
