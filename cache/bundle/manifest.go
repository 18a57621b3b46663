package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
)

// Names of the two files that describe a bundle. They are the last two
// entries of the tar, after every file they describe.
const (
	ManifestName = "modgate-bundle.json"
	SigName      = "modgate-bundle.sig"
)

// Format is the manifest format this package writes and reads.
const Format = 1

// sigHeader is the first line of the signed note over the manifest; the
// second is "sha256 " and the manifest's SHA-256 in hex.
const sigHeader = "modgate-bundle v1"

// Errors callers branch on. Every error of Extract and Verify wraps one.
var (
	// ErrHostile reports an archive refused before its content is
	// checked: a bad entry name or type, a duplicate, an entry or a total
	// over the limits, a truncated stream.
	ErrHostile = errors.New("bundle archive refused")
	// ErrSignature reports a manifest whose signature does not verify
	// with a trusted key, or a tree note that the upstream did not sign.
	ErrSignature = errors.New("bundle signature does not verify")
	// ErrMismatch reports a file whose hash or size differs from the
	// manifest, or a module file whose h1: hash differs from its record.
	ErrMismatch = errors.New("bundle content does not match")
	// ErrProof reports a record, tile or tree that the bundle's tiles do
	// not prove, or a manifest that does not describe the bundle.
	ErrProof = errors.New("bundle proof does not verify")
)

// Manifest describes a bundle: modgate-bundle.json.
type Manifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"` // when the exporting gate wrote it (UTC)
	SumDB   SumDB     `json:"sumdb"`
	// Signer is the verifier key of the note key that signed the
	// manifest (the exporting gate's enterprise key).
	Signer string `json:"signer"`
	// Tree is the witnessed tree head that proves every record.
	Tree Tree `json:"tree"`
	// Since, for an incremental bundle, is the older tree the tiles prove
	// this one extends; the bundle leaves out what that bundle carried.
	Since *Tree `json:"since,omitempty"`
	// HistoryFirst is the first tree head the exporting gate's witness
	// saw: records before it cannot be dated (see Module.FirstSeen).
	HistoryFirst *Seen    `json:"history_first,omitempty"`
	Modules      []Module `json:"modules"`
	Files        []File   `json:"files"`
}

// SumDB names the checksum database whose records the bundle carries.
type SumDB struct {
	Name string `json:"name"` // such as sum.golang.org
	Key  string `json:"key"`  // the upstream's verifier key
}

// Tree is a tree head: its size and its root hash (tlog.Hash.String).
type Tree struct {
	Size int64  `json:"size"`
	Hash string `json:"hash"`
}

// Seen says that the exporting gate's witness first saw a tree head of
// Size records at Time.
type Seen struct {
	Size int64     `json:"size"`
	Time time.Time `json:"time"`
}

// Module is one module version in the bundle.
type Module struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	// Zip is true when the zip is carried; false carries the .info and
	// .mod only (a go.sum "/go.mod" line).
	Zip bool `json:"zip"`
	// Record is the index of its checksum-database record.
	Record int64 `json:"record"`
	// FirstSeen dates the record by the exporting gate's witness; nil
	// when it cannot (the record was in the first tree head it saw).
	FirstSeen *Seen `json:"first_seen,omitempty"`
}

// File is one file of the bundle's tree, other than the manifest and its
// signature.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// Escaped returns the module's escaped path and version, as in proxy paths.
func (m Module) Escaped() (path, version string, err error) {
	if path, err = module.EscapePath(m.Path); err != nil {
		return "", "", fmt.Errorf("%w: module %q: %v", ErrProof, m.Path, err)
	}
	if version, err = module.EscapeVersion(m.Version); err != nil {
		return "", "", fmt.Errorf("%w: module %s version %q: %v", ErrProof, m.Path, m.Version, err)
	}
	if err := module.Check(m.Path, m.Version); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrProof, err)
	}
	return path, version, nil
}

// ModuleFile is the name of a module's file with the extension ext
// (".info", ".mod", ".zip") in the bundle's tree.
func ModuleFile(escPath, escVersion, ext string) string {
	return escPath + "/@v/" + escVersion + ext
}

// ListFile is the name of a module's version list.
func ListFile(escPath string) string { return escPath + "/@v/list" }

// LookupFile is the name of the lookup answer for a module version.
func LookupFile(db, escPath, escVersion string) string {
	return "sumdb/" + db + "/lookup/" + escPath + "@" + escVersion
}

// SupportedFile is the name of the file that tells the go command the
// proxy tree serves the checksum database.
func SupportedFile(db string) string { return "sumdb/" + db + "/supported" }

// MarshalManifest returns the manifest's bytes: indented JSON, the same
// bytes for the same manifest.
func MarshalManifest(m Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// sigText is the text of the note signed over a manifest.
func sigText(manifest []byte) string {
	sum := sha256.Sum256(manifest)
	return sigHeader + "\nsha256 " + hex.EncodeToString(sum[:]) + "\n"
}

// SignManifest returns the signed note over the manifest's bytes.
func SignManifest(manifest []byte, signer note.Signer) ([]byte, error) {
	sig, err := note.Sign(&note.Note{Text: sigText(manifest)}, signer)
	if err != nil {
		return nil, fmt.Errorf("signing the manifest: %w", err)
	}
	return sig, nil
}

// OpenManifest checks the signature sig over the manifest's bytes with
// the trusted verifier keys, then parses the manifest. With no trusted
// keys it checks the signature against the manifest's own Signer, which
// proves the bundle intact but not who made it: trusted then is false.
func OpenManifest(manifest, sig []byte, trust []string) (m Manifest, trusted bool, err error) {
	if err := json.Unmarshal(manifest, &m); err != nil {
		return Manifest{}, false, fmt.Errorf("%w: %s is not valid JSON: %v", ErrProof, ManifestName, err)
	}
	if m.Format != Format {
		return Manifest{}, false, fmt.Errorf("%w: %s has format %d, want %d", ErrProof, ManifestName, m.Format, Format)
	}
	keys, trusted := trust, len(trust) > 0
	if !trusted {
		keys = []string{m.Signer}
	}
	var vs []note.Verifier
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return Manifest{}, false, fmt.Errorf("%w: verifier key %q: %v", ErrSignature, k, err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open(sig, note.VerifierList(vs...))
	if err != nil {
		who := "the trusted keys (" + strings.Join(keys, ", ") + ")"
		return Manifest{}, false, fmt.Errorf("%w: %s: the manifest is not signed by %s: %v", ErrSignature, SigName,
			who, err)
	}
	if n.Text != sigText(manifest) {
		return Manifest{}, false, fmt.Errorf("%w: %s signs another manifest (SHA-256 differs)", ErrSignature, SigName)
	}
	return m, trusted, nil
}
