// Package logfield names the fields of modgate's per-request log lines:
// the access log's one "request" line per module or checksum-database
// request (proxy) and the one "connect" or "forward" line per CONNECT or
// plain proxy request (proxy/egress). One schema: a field that means the
// same thing has the same name in every line. It imports nothing.
package logfield

// Fields shared by every per-request line.
const (
	Client   = "client"   // the client's address, host:port
	Host     = "host"     // the host asked for
	Status   = "status"   // the HTTP status answered
	Duration = "duration" // from the request's arrival to the end of the answer
	Error    = "error"    // why the request failed, if it did
	Decision = "decision" // what was decided: allow, deny, would_deny, tunnel, refuse, ...
	Rule     = "rule"     // the policy rule that decided
)

// Fields of the access log's "request" line.
const (
	Method     = "method"
	Path       = "path"
	Via        = "via"         // intercept, goproxy or goproxy-tls
	Kind       = "kind"        // list, info, mod, zip, latest, lookup, tile, ...
	Module     = "module"      // module path
	Version    = "version"     // module version
	Bytes      = "bytes"       // response body bytes
	Cache      = "cache"       // hit, miss or stale
	Waited     = "waited"      // joined another request's in-flight upstream fetch
	UpstreamMS = "upstream_ms" // time spent on upstream fetches for this answer
)

// Fields of the egress's "connect" and "forward" lines.
const (
	Port      = "port"
	Resolved  = "resolved" // the address dialled (or refused)
	Reason    = "reason"   // the rule's reason
	WouldDeny = "would_deny"
	BytesOut  = "bytes_out" // client to upstream
	BytesIn   = "bytes_in"  // upstream to client
	Hint      = "hint"      // what an operator can change about a refusal
)
