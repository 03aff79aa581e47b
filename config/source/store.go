package source

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/atomicfile"
)

// Store keeps the last good configuration under Dir (/var/lib/weft on a
// node: the state disk when there is one, else RAM), so that a node whose
// later fetch fails or is invalid keeps working. One file holds the whole
// set, written atomically: a crash leaves the previous set or the new one,
// never a mix. The file starts with a header line giving its format
// version, the length and the SHA-256 of what follows, so that a
// truncated or damaged file is refused whole, never applied in part.
type Store struct {
	Dir string
}

// storeFile is the name of the stored set under Store.Dir.
const storeFile = "last-good.json"

// storeMagic starts the header line: "weft-last-good 2 <bytes> sha256:<hex>".
const (
	storeMagic   = "weft-last-good"
	storeVersion = 2
)

// stored is the file format. The documents are kept as they were received,
// so that Load parses exactly what was validated.
type stored struct {
	Source      string          `json:"source"`
	SavedAt     time.Time       `json:"savedAt"`
	MetaData    json.RawMessage `json:"metaData,omitempty"`
	NetworkData json.RawMessage `json:"networkData,omitempty"`
	UserData    []byte          `json:"userData,omitempty"` // base64 in JSON
	WeftYAML    string          `json:"weftYAML"`
}

// Path is the file the set is kept in.
func (s Store) Path() string { return filepath.Join(s.Dir, storeFile) }

// Save records b and its validated configuration c (from config.Parse or
// b.Config) as the last good set. The file is readable by root only: the
// configuration holds BGP passwords and join tokens.
func (s Store) Save(b *config.Bundle, c *config.Config) error {
	if b == nil || c == nil {
		return errors.New("store: nothing to save (nil bundle or config)")
	}
	if c.Raw() == nil {
		return errors.New("store: the config has no source document (only configs from Parse can be stored)")
	}
	rec := stored{Source: b.Source, SavedAt: time.Now().UTC(), UserData: b.UserData, WeftYAML: string(c.Raw())}
	if b.MetaData != nil && json.Valid(b.MetaData.Raw()) {
		rec.MetaData = b.MetaData.Raw()
	}
	if b.NetworkData != nil && json.Valid(b.NetworkData.Raw()) {
		rec.NetworkData = b.NetworkData.Raw()
	}
	payload, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	sum := sha256.Sum256(payload)
	data := fmt.Appendf(nil, "%s %d %d sha256:%s\n", storeMagic, storeVersion, len(payload), hex.EncodeToString(sum[:]))
	return writeAtomic(s.Path(), append(data, payload...))
}

// Load returns the last good set. Without one it returns an error wrapping
// config.ErrNotFound. A file that is truncated, damaged or of another
// format is an error naming it, and nothing of it is returned.
func (s Store) Load() (*config.Bundle, *config.Config, error) {
	path := s.Path()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("last good config %s: none stored: %w", path, config.ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("last good config: %w", err)
	}
	payload, err := checkStored(data)
	if err != nil {
		return nil, nil, fmt.Errorf("last good config %s: %w", path, err)
	}
	var rec stored
	if err := json.Unmarshal(payload, &rec); err != nil {
		return nil, nil, fmt.Errorf("last good config %s: %w", path, err)
	}
	b := &config.Bundle{Source: rec.Source, UserData: rec.UserData}
	if rec.MetaData != nil {
		if b.MetaData, err = config.ParseMetaData(rec.MetaData); err != nil {
			return nil, nil, fmt.Errorf("last good config %s: meta_data.json: %w", path, err)
		}
	}
	if rec.NetworkData != nil {
		if b.NetworkData, err = config.ParseNetworkData(rec.NetworkData); err != nil {
			return nil, nil, fmt.Errorf("last good config %s: network_data.json: %w", path, err)
		}
	}
	c, err := config.Parse([]byte(rec.WeftYAML))
	if err != nil {
		return nil, nil, fmt.Errorf("last good config %s: weft.yaml: %w", path, err)
	}
	return b, c, nil
}

// checkStored checks a stored file's header line against what follows it
// and returns the payload.
func checkStored(data []byte) ([]byte, error) {
	head, payload, ok := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(head))
	if !ok || len(f) != 4 || f[0] != storeMagic {
		return nil, fmt.Errorf("not a last good config file (no %q header line)", storeMagic)
	}
	if f[1] != strconv.Itoa(storeVersion) {
		return nil, fmt.Errorf("format version %s is not supported (want %d)", f[1], storeVersion)
	}
	n, err := strconv.Atoi(f[2])
	want, hasSum := strings.CutPrefix(f[3], "sha256:")
	if err != nil || n < 0 || !hasSum {
		return nil, fmt.Errorf("malformed header line %q", head)
	}
	switch {
	case len(payload) < n:
		return nil, fmt.Errorf("truncated: %d of %d bytes (an interrupted write or a damaged disk); refused", len(payload), n)
	case len(payload) > n:
		return nil, fmt.Errorf("%d bytes beyond the %d its header gives; refused", len(payload)-n, n)
	}
	if sum := sha256.Sum256(payload); hex.EncodeToString(sum[:]) != want {
		return nil, errors.New("SHA-256 does not match its header (the file is damaged); refused")
	}
	return payload, nil
}

// writeAtomic replaces path with data (atomicfile: FAT needs its sync
// after the rename). Temporary files an interrupted earlier write left
// are removed first: the state disk is small, and only the store writes
// its file.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	atomicfile.RemoveTemps(path)
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
