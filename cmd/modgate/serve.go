package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/cluster"
	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/proxy/audit"
	"github.com/modgate/modgate/proxy/egress"
	"github.com/modgate/modgate/signer"
)

// serveOptions are the flags of modgate serve.
type serveOptions struct {
	config, dataDir, listen, adminListen string
	upstream, upstreamSumDB, upstreamCA  string
	intercept, private, logLevel         string
	interceptSet                         bool // --intercept given: no default host is dropped
	vulnRefresh                          time.Duration
	vulnVersion                          string
	logFormat                            string
	logFlush                             time.Duration // --log-flush-interval (logging.go)
	terminal                             bool          // stderr is a terminal: show progress
	offline                              bool
	listTTL                              time.Duration
	prefetch                             int
	cacheMaxSize                         byteSize
	minFree                              minFree
	shutdownTimeout                      time.Duration
	debugListen                          string
	policy                               string
	adminTLS                             bool
	allowRange                           []string
	parentProxy                          string
	parentAuthFile                       string // --parent-proxy-auth-file
	parentAuthEnv                        string // MODGATE_PARENT_PROXY_AUTH
	stallTimeout                         time.Duration
	writeIdle                            time.Duration // --write-idle-timeout
	auditMaxAge                          time.Duration
	auditMaxSize                         byteSize
	auditInterval                        time.Duration
	maxConnects                          int // --max-connects
	witnessInterval                      time.Duration
	tls                                  tlsOptions     // the HTTPS GOPROXY endpoint (tls.go)
	cluster                              clusterOptions // --cluster-db and its password (cluster.go)
	exit                                 func(code int) // ends the process at --shutdown-timeout; nil: os.Exit

	clusterObjects clusterObjectOptions // --cluster-fetch-lease (clusterobjects.go)
}

func newServeCmd(getenv env, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gate: an intercepting HTTPS proxy and GOPROXY endpoint",
		Args:  cobra.NoArgs,
	}
	var o serveOptions
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "YAML file of settings named like the flags")
	dataDir := addDataDir(cmd, getenv)
	f.StringVar(&o.listen, "listen", defaultListen, "proxy and GOPROXY listen address")
	f.StringVar(
		&o.adminListen,
		"admin-listen",
		defaultAdminListen,
		"admin listen address (/healthz, /readyz, /ca.pem, /verifier.txt, /metrics and the authenticated /api/)",
	)
	f.StringVar(&o.upstream, "upstream", defaultUpstream, "upstream module proxy")
	f.StringVar(
		&o.upstreamSumDB,
		"upstream-sumdb",
		defaultUpstreamSumDB,
		"upstream checksum database verifier key, optionally followed by a space and its URL",
	)
	f.StringVar(&o.upstreamCA, "upstream-ca", "", "PEM file of extra roots for the upstream's TLS")
	f.StringVar(
		&o.intercept,
		"intercept",
		strings.Join(proxy.DefaultIntercept, ","),
		"comma list of hosts whose CONNECTs are intercepted",
	)
	f.StringVar(
		&o.private,
		"private",
		"",
		"comma list of module path patterns that skip the public checksum database (as GONOSUMDB)",
	)
	f.BoolVar(&o.offline, "offline", false, "serve from the cache only; a miss answers 504")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "json", "json, or console for people reading a terminal")
	f.DurationVar(&o.logFlush, "log-flush-interval", defaultLogFlush,
		"how long info and debug lines (the access log) may wait in a 256 KiB buffer before they are written; "+
			"warnings and errors are written at once; 0 writes every line at once")
	f.DurationVar(&o.listTTL, "list-ttl", time.Minute, "how long list and @latest answers stay fresh")
	f.IntVar(&o.prefetch, "prefetch", 4,
		"workers that fetch and verify, ahead of the client, the go.mod files a go.mod fetched for a client "+
			"requires; 0 turns it off")
	f.StringVar(
		&o.debugListen,
		"debug-listen",
		"",
		"address of an unauthenticated debug listener (pprof, counters); off by default, use a loopback address",
	)
	f.StringSliceVar(
		&o.allowRange,
		"allow-range",
		nil,
		"CIDR range that tunnels may reach although it is refused by default (loopback, private, link-local, ...); "+
			"repeatable or a comma list",
	)
	f.StringVar(
		&o.parentProxy,
		"parent-proxy",
		"",
		"http://[user:password@]host:port of a corporate proxy for the upstream fetches and the tunnels",
	)
	f.DurationVar(
		&o.witnessInterval,
		"witness-interval",
		5*time.Minute,
		"how often the witness reads the upstream's newest tree head, which dates new checksum-database records "+
			"for the cooldown (never with --offline)",
	)
	f.DurationVar(
		&o.stallTimeout,
		"upstream-stall-timeout",
		proxy.DefaultStallTimeout,
		"how long the upstream may send nothing before a fetch fails with 504",
	)
	f.StringVar(
		&o.policy,
		"policy",
		"",
		"policy file (default <data-dir>/policy.yaml, written with a commented default if missing); "+
			"hand edits take effect within 2s",
	)
	f.BoolVar(
		&o.adminTLS,
		"admin-tls",
		false,
		"serve the admin listener over TLS (certificate for modgate.admin from the CA; "+
			"client certificates from the CA authenticate)",
	)
	f.StringVar(&o.parentAuthFile, "parent-proxy-auth-file", "",
		"file (mode 0600) holding user:password for --parent-proxy; or set "+parentProxyAuthEnv)
	f.DurationVar(&o.writeIdle, "write-idle-timeout", proxy.DefaultWriteIdle,
		"how long a client may read nothing of a response before modgate closes its connection "+
			"(a slow reader that keeps reading is served)")
	f.IntVar(&o.maxConnects, "max-connects", proxy.DefaultMaxConnects,
		"CONNECTs (intercepted or tunnelled) open at once; past it a CONNECT gets 503; -1 means no cap")
	f.DurationVar(&o.auditMaxAge, "audit-max-age", audit.DefaultMaxAge, "audit entries older than this are deleted")
	o.auditMaxSize = audit.DefaultMaxBytes
	f.Var(&o.auditMaxSize, "audit-max-size",
		"bound on the audit log, such as 64MiB: past it the oldest entries are deleted")
	f.DurationVar(&o.auditInterval, "audit-interval", audit.DefaultInterval,
		"would-be denials (report mode) of one rule within this share one audit entry, with a count")
	addTLSFlags(f, &o.tls)
	addClusterFlags(f, &o.cluster)
	addClusterObjectFlags(f, &o.clusterObjects)
	f.Var(
		&o.minFree,
		"min-free",
		"free space to keep on the cache's filesystem, such as 2GiB, 10% or 2GiB,10% (the larger); below it new "+
			"objects are refused with 507 and /readyz says degraded (default the larger of 1GiB and 5%)",
	)
	f.DurationVar(
		&o.shutdownTimeout,
		"shutdown-timeout",
		30*time.Second,
		"how long SIGTERM may take: past it modgate exits anyway, logging what it abandoned "+
			"(the next start recovers from the cache's logs)",
	)
	f.Var(
		&o.cacheMaxSize,
		"cache-max-size",
		"bound on the cache, such as 20GiB: past it the least recently used zips, .mod, .info and checksum data "+
			"are evicted (default unbounded)",
	)
	f.DurationVar(&o.vulnRefresh, "vuln-refresh", proxy.DefaultVulnRefresh,
		"how often the vulnerability database mirror looks for a newer "+proxy.DefaultVulnModule+" (never with --offline)")
	f.StringVar(&o.vulnVersion, "vuln-module-version", "",
		"pin the version of "+proxy.DefaultVulnModule+" the vulnerability database is built from (default the newest)")
	markList(f, "intercept", "private", "tls-names")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !f.Changed("config") {
			o.config = getenv("MODGATE_CONFIG")
		}
		if err := applyEnvAndConfig(f, getenv, o.config); err != nil {
			return err
		}
		o.dataDir = *dataDir
		o.interceptSet = f.Changed("intercept")
		o.parentAuthEnv = getenv(parentProxyAuthEnv)
		if o.terminal = isTerminal(stderr); o.terminal {
			// A person is watching: readable logs of what needs attention,
			// and progress lines (see progress.go) instead of access logs.
			if !f.Changed("log-format") {
				o.logFormat = "console"
			}
			if !f.Changed("log-level") {
				o.logLevel = "warn"
			}
			if !f.Changed("log-flush-interval") {
				o.logFlush = 0 // few lines, and the person reads them now
			}
		}
		return serve(cmd.Context(), o, stderr)
	}
	return cmd
}

// newLogger builds the JSON (or console) logger at the given level. With a
// positive flush interval its lines go through a buffer (see bufferedLog);
// stop writes what is buffered and must be called before the process ends.
func newLogger(level, format string, flush time.Duration, w io.Writer) (log *zap.Logger, stop func(), err error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--log-level: %v", err)}
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	// One unit for every duration in the logs: milliseconds, as upstream_ms.
	ec.EncodeDuration = zapcore.MillisDurationEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, nil, usageError{fmt.Errorf("--log-format %q: want json or console", format)}
	}
	if flush < 0 {
		return nil, nil, usageError{fmt.Errorf("--log-flush-interval %s: want 0 or a positive duration", flush)}
	}
	ws, stop := bufferedLog(zapcore.AddSync(w), flush)
	return zap.New(urgentCore{zapcore.NewCore(enc, ws, lvl)}), stop, nil
}

// serve wires the gate together and runs it until ctx ends.
func serve(ctx context.Context, o serveOptions, stderr io.Writer) error {
	log, stopLog, err := newLogger(o.logLevel, o.logFormat, o.logFlush, stderr)
	if err != nil {
		return err
	}
	defer stopLog()
	dbName, dbURL, err := parseSumDB(o.upstreamSumDB)
	if err != nil {
		return usageError{err}
	}
	if err := checkVulnFlags(o); err != nil {
		return usageError{err}
	}
	if o.witnessInterval <= 0 {
		return usageError{fmt.Errorf("--witness-interval %s: want a positive duration, such as 5m", o.witnessInterval)}
	}
	if o.prefetch < 0 || o.prefetch > 64 {
		return usageError{fmt.Errorf("--prefetch %d: want 0 (off) to 64 workers", o.prefetch)}
	}
	upstreamURL, err := parseUpstream(o.upstream)
	if err != nil {
		return usageError{err}
	}
	intercept := splitList(o.intercept)
	if o.tls.nameList, err = o.tls.tlsNames(intercept); err != nil {
		return usageError{err}
	}
	if err := validateServe(o); err != nil {
		return err
	}
	if err := checkWritable(o.dataDir); err != nil {
		return err
	}
	created, vkey, err := initDataDir(o.dataDir, intercept, o.tls.caNames(), dbName)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stderr, "modgate: initialized %s: a new CA, enterprise note key and admin token\n", o.dataDir)
		printClientLines(stderr, o.dataDir, proxyURL(o.listen), vkey)
	}
	prog := progress{w: stderr, on: o.terminal}
	prog.step("opening the data directory %s and the cache", o.dataDir)
	g, err := openGate(ctx, o, log, dbName, dbURL, upstreamURL, intercept)
	if err != nil {
		return err
	}
	defer g.close()
	exit := o.exit
	if exit == nil {
		exit = os.Exit
	}
	clock := startShutdownClock(ctx, o.shutdownTimeout, log, exit)
	defer clock.stop()
	g.progress = prog
	err = g.run(ctx, o, log)
	if cerr := g.closeCache(clock, log); err == nil {
		err = cerr
	}
	return err
}

func parseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--upstream %q: want an http:// or https:// URL", s)
	}
	return u, nil
}

// gateParts are the opened pieces of a running gate.
type gateParts struct {
	registry *prometheus.Registry
	metrics  *proxy.Metrics
	cache    *cache.Store
	leaves   *pki.Leaves
	ca       *pki.CA
	server   *proxy.Server
	egress   *egress.Egress
	verifier string // the enterprise verifier key, served at /verifier.txt
	progress progress
	policy   *policy.File // the policy in force
	witness  *signer.Witness
	audit    *audit.Log
	gate     *proxy.Gate
	cluster  *cluster.DB    // the shared database with --cluster-db, else nil
	bundles  *proxy.Bundler // air-gap bundles' export and import
}

func (g *gateParts) close() {
	if g.audit != nil {
		g.audit.Flush(context.Background()) // the counts of open would_deny entries
	}
	if g.leaves != nil {
		g.leaves.Stop()
	}
	if g.cache != nil {
		g.cache.Close()
	}
	if g.cluster != nil {
		g.cluster.Close()
	}
}

// openGate loads the keys (refusing secrets readable by others), opens the
// cache and builds the witness, the pipeline and the server. On error it
// releases what it opened, in one place.
func openGate(ctx context.Context, o serveOptions, log *zap.Logger, dbName, dbURL string, upstreamURL *url.URL,
	intercept []string) (_ *gateParts, err error) {
	g := &gateParts{registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	g.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.metrics = proxy.NewMetrics(g.registry)
	if g.ca, err = pki.Load(o.dataDir); err != nil {
		return nil, err
	}
	intercept = vulnHostForOldCA(g.ca, intercept, o.interceptSet, log) // vuln.go.dev (vuln.go)
	sig, err := g.loadKeys(o.dataDir, dbName, intercept)
	if err != nil {
		return nil, err
	}
	o.cluster.dataDir = o.dataDir
	if g.cluster, err = g.openCluster(ctx, o.cluster, log); err != nil {
		return nil, err
	}
	if g.policy, err = openPolicy(ctx, o, log, g.policySource()); err != nil {
		return nil, err
	}
	parent, err := resolveParentProxy(o)
	if err != nil {
		return nil, usageError{err}
	}
	client, err := upstreamClient(o.upstreamCA, parent, o.stallTimeout)
	if err != nil {
		return nil, err
	}
	var base *url.URL
	if dbURL != "" {
		if base, err = parseUpstream(dbURL); err != nil {
			return nil, usageError{fmt.Errorf("--upstream-sumdb URL: %v", err)}
		}
	}
	cc := cache.Config{Dir: filepath.Join(o.dataDir, "cache"), Logger: log, MaxSize: int64(o.cacheMaxSize),
		MinFree: cache.FreeSpace(o.minFree)}
	if g.cache, err = cache.Open(ctx, cc); err != nil {
		return nil, err
	}
	remote := proxy.NewSumDBRemote(dbName, base, upstreamURL, client, o.offline)
	remote.Metrics = g.metrics
	g.witness, err = signer.New(ctx, signer.Config{Upstream: strings.Fields(o.upstreamSumDB)[0], Signer: sig,
		Store: g.witnessStore(), Shared: g.cluster != nil, Remote: remote, Logger: log.Named("witness")})
	if err != nil {
		return nil, err
	}
	spool, err := cleanSpool(filepath.Join(o.dataDir, "spool"))
	if err != nil {
		return nil, err
	}
	secondLevel, leases, err := g.clusterObjects(o.clusterObjects, log)
	if err != nil {
		return nil, err
	}
	g.audit = audit.NewWith(audit.Config{Store: g.auditStore(), MaxAge: o.auditMaxAge, MaxBytes: int64(o.auditMaxSize),
		Interval: o.auditInterval, Logger: log.Named("audit"), Shared: g.cluster != nil})
	g.gate, err = proxy.New(proxy.Config{
		Upstream: upstreamURL, HTTPClient: client, Cache: g.cache, Witness: g.witness, Intercept: intercept,
		Private: splitList(o.private), Offline: o.offline, ListTTL: o.listTTL, SpoolDir: spool,
		Logger: log.Named("access"), Metrics: g.metrics, Policy: g.policy.Current, Audit: g.audit,
		Public:      publicFiles(g.ca.CertPEM, g.verifier),
		Vuln:        proxy.VulnConfig{Version: o.vulnVersion, Refresh: o.vulnRefresh},
		SecondLevel: secondLevel, Leases: leases, Prefetch: o.prefetch,
	})
	if err != nil {
		return nil, err
	}
	// Air-gap bundles: export and import through the admin API.
	g.bundles, err = proxy.NewBundler(proxy.BundleConfig{Gate: g.gate, Witness: g.witness, Signer: sig,
		Verifier: g.verifier, Upstream: strings.Fields(o.upstreamSumDB)[0]})
	if err != nil {
		return nil, err
	}
	lc := pki.LeavesConfig{CA: g.ca, Dir: o.dataDir, Allow: o.tls.allow(g.gate.Intercepts),
		Logger: libraryLogger(log.Named("certs"))}
	if g.leaves, err = pki.NewLeaves(ctx, lc); err != nil {
		return nil, err
	}
	g.server = proxy.NewServer(g.gate, g.leaves.TLSConfig(), log.Named("proxy"))
	if g.egress, err = newEgress(o, parent, hostPolicy(g.policy), log.Named("egress")); err != nil {
		return nil, err
	}
	g.server.SetEgress(g.egress)
	g.server.SetLimits(proxy.Limits{WriteIdle: o.writeIdle, MaxConnects: o.maxConnects})
	g.registry.MustRegister(proxy.NewCollector(g.cache, g.witness))
	g.registry.MustRegister(proxy.NewVulnCollector(g.gate))
	return g, nil
}

// loadKeys loads the CA and the enterprise note key from dataDir and
// checks that the admin token is private. The CA must permit every
// intercepted host, and the note key must be named for database dbName.
func (g *gateParts) loadKeys(dataDir, dbName string, intercept []string) (note.Signer, error) {
	for _, h := range intercept {
		if !g.ca.Permits(h) {
			return nil, fmt.Errorf("intercepted host %s is outside the CA's name constraints (%s): "+
				"create a new data directory, or remove ca.pem and ca-key.pem and redistribute the new CA",
				h, strings.Join(g.ca.Names(), ", "))
		}
	}
	sig, verifier, err := signer.LoadKey(dataDir)
	if err != nil {
		return nil, err
	}
	g.verifier = verifier
	if sig.Name() != dbName {
		return nil, fmt.Errorf("the enterprise note key is named %s but the upstream checksum database is %s: "+
			"clients could not use it as GOSUMDB", sig.Name(), dbName)
	}
	if _, err := signer.ReadSecret(filepath.Join(dataDir, adminTokenFile)); err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return sig, nil
}

// publicFiles are the files the proxy listener serves to clients at
// /.modgate/: the CA certificate and the verifier key, both public.
func publicFiles(caPEM []byte, verifier string) []proxy.PublicFile {
	return []proxy.PublicFile{
		{Name: proxy.PublicCA, ContentType: "application/x-pem-file", Body: caPEM},
		{Name: proxy.PublicVerifier, ContentType: "text/plain; charset=utf-8", Body: []byte(verifier + "\n")},
	}
}

// cleanSpool makes the spool directory and removes zips that a killed
// process left half downloaded.
func cleanSpool(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("spool directory: %w", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "modgate-spool-*"))
	for _, f := range left {
		os.Remove(f)
	}
	return dir, nil
}

// upstreamClient builds the upstream HTTP client with extra roots from a
// PEM file, through the parent proxy if any.
func upstreamClient(caFile string, parent *url.URL, stall time.Duration) (*http.Client, error) {
	opts := proxy.ClientOptions{ParentProxy: parent, StallTimeout: stall}
	if caFile == "" {
		return proxy.NewHTTPClientWith(opts), nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--upstream-ca: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--upstream-ca %s: %w", caFile, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("--upstream-ca %s: no PEM certificates found", caFile)
	}
	opts.Roots = certs
	return proxy.NewHTTPClientWith(opts), nil
}

// firstPollTimeout bounds the witness's poll at start, so that an
// unreachable upstream delays serving by at most this much.
const firstPollTimeout = 5 * time.Second

// run listens on the proxy and admin addresses and serves until ctx ends.
func (g *gateParts) run(ctx context.Context, o serveOptions, log *zap.Logger) error {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	aln, err := g.listenAdmin(o)
	if err != nil {
		ln.Close()
		return err
	}
	g.egress.AddSelf(aln.Addr())
	admin := &http.Server{Handler: admin.Handler(admin.Config{
		Ready: g.server.Ready, Degraded: g.degraded, CAPEM: g.ca.CertPEM, Verifier: g.verifier,
		Metrics: promhttp.HandlerFor(g.registry, promhttp.HandlerOpts{}),
		API: adminAPI(o.dataDir, g.ca.Cert, g.policy, g.audit, g.gate.Facts, log,
			admin.NewWitnessAPI(admin.WitnessAPIConfig{Witness: g.witness, Audit: g.audit, Logger: log.Named("admin")}),
			admin.CacheAPI{Stats: g.cache, Traffic: g.metrics},
			admin.VulnAPI{Status: func() any { return g.gate.VulnStatus() }, DB: g.gate.VulnDB},
			admin.NewBundleAPI(admin.BundleAPIConfig{Bundles: g.bundles, Audit: g.audit, Logger: log.Named("admin")})),
	}), ReadHeaderTimeout: 10 * time.Second}
	go admin.Serve(aln)
	defer admin.Close()
	go g.policy.Watch(ctx, policy.DefaultWatchInterval)
	g.watchCluster(ctx, log)
	if !o.offline { // witness the upstream before serving, then every interval
		first, cancel := context.WithTimeout(ctx, firstPollTimeout)
		g.witness.PollOnce(first)
		cancel()
		go g.witness.Poll(ctx, o.witnessInterval)
	}
	go g.gate.RunVuln(ctx) // the vulnerability database mirror
	// The prefetch workers store into the cache: they end before it closes.
	pctx, stopPrefetch := context.WithCancel(ctx)
	prefetchDone := make(chan struct{})
	go func() {
		defer close(prefetchDone)
		g.gate.RunPrefetch(pctx)
	}()
	defer func() { stopPrefetch(); <-prefetchDone }()
	stopDebug, err := g.serveDebug(o.debugListen, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopDebug()
	tlsAddr, stopTLS, err := g.serveTLS(ctx, o, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopTLS()
	log.Info(
		"modgate serving",
		zap.String("listen", ln.Addr().String()),
		zap.String("tls_listen", tlsAddr),
		zap.String("admin", aln.Addr().String()),
		zap.Bool("admin_tls", o.adminTLS),
		zap.String("policy", g.policy.Path()),
		zap.String(
			"upstream",
			o.upstream,
		),
		zap.String("data_dir", o.dataDir),
		zap.Bool("offline", o.offline),
		zap.String("version", version),
	)
	mode := "upstream " + o.upstream
	if o.offline {
		mode = "offline, from the cache only"
	}
	g.progress.step("serving on %s (admin %s), %s; Ctrl-C stops", ln.Addr(), aln.Addr(), mode)
	go g.progress.watch(ctx, g.metrics, 5*time.Second)
	err = g.server.Serve(ctx, ln)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("modgate stopped")
	return err
}
