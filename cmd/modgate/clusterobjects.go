package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/modgate/modgate/cluster"
	"github.com/modgate/modgate/proxy"
)

// clusterObjectOptions are the flags of the cluster's shared object level
// (issue 12: verified objects, one fetch per object across the gates).
type clusterObjectOptions struct {
	fetchLease time.Duration // --cluster-fetch-lease
}

// addClusterObjectFlags adds the object-level flags to f.
func addClusterObjectFlags(f *pflag.FlagSet, o *clusterObjectOptions) {
	f.DurationVar(&o.fetchLease, "cluster-fetch-lease", cluster.DefaultLeaseTTL,
		"with --cluster-db: how long a gate that died while fetching an object keeps the others waiting for it "+
			"(a live gate renews its lease every third of this)")
}

// clusterObjects returns the second level of verified objects and the
// fetch leases of the cluster database, or nils with no --cluster-db.
func (g *gateParts) clusterObjects(o clusterObjectOptions, log *zap.Logger) (proxy.SecondLevel, proxy.FetchLeases,
	error) {
	if g.cluster == nil {
		return nil, nil, nil
	}
	if o.fetchLease < time.Second {
		return nil, nil, usageError{fmt.Errorf("--cluster-fetch-lease %s: want at least 1s", o.fetchLease)}
	}
	host, _ := os.Hostname()
	name := fmt.Sprintf("%s/%d", host, os.Getpid())
	objects := cluster.NewObjects(g.cluster, cluster.ObjectsConfig{Gate: name, Logger: log.Named("objects")})
	leases := cluster.NewLeases(g.cluster, cluster.LeasesConfig{TTL: o.fetchLease, Holder: name,
		Logger: log.Named("leases")})
	return secondLevel{objects}, leases, nil
}

// secondLevel adapts cluster.Objects to proxy.SecondLevel.
type secondLevel struct{ o *cluster.Objects }

var (
	_ proxy.SecondLevel = secondLevel{}
	_ proxy.FetchLeases = (*cluster.Leases)(nil)
)

// Open implements proxy.SecondLevel.
func (s secondLevel) Open(ctx context.Context, key string) (io.ReadCloser, proxy.SharedMeta, bool, error) {
	r, m, found, err := s.o.Open(ctx, key)
	if err != nil || !found {
		return nil, proxy.SharedMeta{}, found, err
	}
	return r, proxy.SharedMeta{Size: m.Size, SHA256: m.SHA256, Mark: m.Mark, ChunksChecked: m.ChunksChecked}, true, nil
}

// Put implements proxy.SecondLevel.
func (s secondLevel) Put(ctx context.Context, key string, r io.Reader, m proxy.SharedMeta) error {
	return s.o.Put(ctx, key, r, cluster.ObjectMeta{Size: m.Size, SHA256: m.SHA256, Mark: m.Mark})
}
