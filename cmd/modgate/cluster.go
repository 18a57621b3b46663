package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/cluster"
	"github.com/modgate/modgate/internal/atomicfile"
	"github.com/modgate/modgate/internal/secretfile"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/proxy/audit"
	"github.com/modgate/modgate/signer"
)

// clusterOptions are the flags of serve that join a cluster of gates
// sharing one PostgreSQL database (issue 12).
type clusterOptions struct {
	db           string // --cluster-db (MODGATE_CLUSTER_DB)
	passwordFile string // --cluster-db-password-file
	dataDir      string // --data-dir, where clusterMarkerFile is kept
}

// clusterMarkerFile, in the data directory of a clustered gate, names its
// database (password redacted): the witness commands that read the cache
// of a stopped gate refuse such a gate, whose witness is in the database.
const clusterMarkerFile = "cluster-db"

// refuseClustered fails for the data directory of a clustered gate.
func refuseClustered(dataDir string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, clusterMarkerFile))
	if err != nil {
		return nil
	}
	return fmt.Errorf("the gate of %s is in a cluster (database %s): its witness is in the database, "+
		"not in its cache; run the command against a running gate of the cluster (--admin URL)",
		dataDir, strings.TrimSpace(string(b)))
}

// addClusterFlags adds the cluster flags to f.
func addClusterFlags(f *pflag.FlagSet, o *clusterOptions) {
	f.StringVar(&o.db, "cluster-db", "",
		"postgres:// URL of the database that several gates share (witness, policy, audit); "+
			"empty: a single gate with no database")
	f.StringVar(&o.passwordFile, "cluster-db-password-file", "",
		"file (mode 0600) holding the password for --cluster-db; PGPASSFILE works as well")
}

// openCluster connects to the cluster database, if one is configured, and
// checks that this gate carries the cluster's keys. It returns nil with no
// --cluster-db.
func (g *gateParts) openCluster(ctx context.Context, o clusterOptions, log *zap.Logger) (*cluster.DB, error) {
	if o.db == "" {
		if o.passwordFile != "" {
			return nil, usageError{fmt.Errorf("--cluster-db-password-file needs --cluster-db")}
		}
		os.Remove(filepath.Join(o.dataDir, clusterMarkerFile)) // a single gate again: its witness is in its cache
		return nil, nil
	}
	var password string
	if o.passwordFile != "" {
		b, err := secretfile.Read(o.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--cluster-db-password-file: %w", err)
		}
		if password = strings.TrimRight(string(b), "\r\n"); password == "" {
			return nil, fmt.Errorf("--cluster-db-password-file %s is empty", o.passwordFile)
		}
	}
	db, err := cluster.Connect(ctx, cluster.Config{URL: o.db, Password: password, Logger: log.Named("cluster")})
	if err != nil {
		return nil, err
	}
	first, err := db.CheckIdentity(ctx, cluster.Identity{Verifier: g.verifier, CACert: g.ca.Cert.Raw})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("joining the cluster at %s: %w", cluster.Redact(o.db), err)
	}
	log.Info("cluster database", zap.String("url", cluster.Redact(o.db)), zap.Bool("first_gate", first))
	marker := filepath.Join(o.dataDir, clusterMarkerFile)
	if err := atomicfile.Write(marker, []byte(cluster.Redact(o.db)+"\n"), 0o644); err != nil {
		db.Close()
		return nil, fmt.Errorf("writing %s: %w", marker, err)
	}
	g.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "modgate_cluster_db_up",
			Help: "1 while the cluster database answers, 0 while this gate serves its first level only"},
			func() float64 {
				if up, _ := db.Health(); up {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "modgate_cluster_db_outages_total",
			Help: "times the cluster database became unreachable (the gate degraded)"},
			func() float64 { return float64(db.Outages()) }),
	)
	return db, nil
}

// clusterResync is how often a gate re-reads the shared state even when
// no notification arrived: the fallback of LISTEN/NOTIFY.
const clusterResync = time.Second

// witnessStore is where the witness keeps its state: the cluster database
// when there is one, else the gate's own cache.
func (g *gateParts) witnessStore() signer.Store {
	if g.cluster != nil {
		return cluster.WitnessStore{DB: g.cluster}
	}
	return proxy.WitnessStore{Cache: g.cache}
}

// policySource is where the policy lives: the cluster database, or nil
// for the gate's own policy file.
func (g *gateParts) policySource() policy.Source {
	if g.cluster == nil {
		return nil
	}
	return cluster.PolicySource{DB: g.cluster}
}

// auditStore is where the audit log lives: the cluster database's table,
// queryable with SQL, or the gate's own cache.
func (g *gateParts) auditStore() audit.Store {
	if g.cluster == nil {
		return g.cache
	}
	return auditTable{cluster.AuditTable{DB: g.cluster}}
}

// auditTable adapts the cluster's audit table to audit.Store.
type auditTable struct{ t cluster.AuditTable }

var _ audit.Store = auditTable{}

func (a auditTable) Put(ctx context.Context, key string, value []byte) error {
	return a.t.Put(ctx, key, value)
}
func (a auditTable) Delete(ctx context.Context, key string) error { return a.t.Delete(ctx, key) }
func (a auditTable) Scan(ctx context.Context, prefix string, fn func(key string, e cache.Entry) error) error {
	return a.t.Scan(ctx, prefix, func(key string, value []byte) error { return fn(key, cache.Entry{Value: value}) })
}

// watchCluster keeps what this gate holds of the shared state in step with
// the database: the witness and the policy reload on every change another
// gate announces, and every clusterResync. It does nothing for a single gate.
func (g *gateParts) watchCluster(ctx context.Context, log *zap.Logger) {
	if g.cluster == nil {
		return
	}
	go g.cluster.Monitor(ctx, clusterResync)
	go g.cluster.Watch(ctx, cluster.WitnessChannel, clusterResync, func(ctx context.Context, _ string) {
		err := g.witness.Sync(ctx)
		if up, _ := g.cluster.Health(); err != nil && up && ctx.Err() == nil { // an outage is logged once
			log.Warn("cannot reload the shared witness state", zap.Error(err))
		}
	})
	go g.cluster.Watch(ctx, cluster.PolicyChannel, clusterResync, func(ctx context.Context, _ string) {
		g.policy.Reload(ctx) // logs its own errors
	})
}

// clusterDegraded says why the gate is degraded by its cluster database,
// or "" when it has none or the database answers.
func (g *gateParts) clusterDegraded() string {
	if g.cluster == nil {
		return ""
	}
	if up, why := g.cluster.Health(); !up {
		return fmt.Sprintf("cluster database unreachable (%v): serving the first level only; "+
			"new checksum verification fails with 503", why)
	}
	return ""
}
