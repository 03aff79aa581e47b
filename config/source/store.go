package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/weftnet/weft/config"
)

// Store keeps the last good configuration under Dir (/var/lib/weft on a
// node), so that a node whose later fetch fails or is invalid keeps
// working. One file holds the whole set, written atomically: a crash
// leaves the previous set or the new one, never a mix.
type Store struct {
	Dir string
}

// storeFile is the name of the stored set under Store.Dir.
const storeFile = "last-good.json"

// stored is the file format. The documents are kept as they were received,
// so that Load parses exactly what was validated.
type stored struct {
	Version     int             `json:"version"`
	Source      string          `json:"source"`
	SavedAt     time.Time       `json:"savedAt"`
	MetaData    json.RawMessage `json:"metaData,omitempty"`
	NetworkData json.RawMessage `json:"networkData,omitempty"`
	UserData    []byte          `json:"userData,omitempty"` // base64 in JSON
	WeftYAML    string          `json:"weftYAML"`
}

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
	rec := stored{Version: 1, Source: b.Source, SavedAt: time.Now().UTC(), UserData: b.UserData, WeftYAML: string(c.Raw())}
	if b.MetaData != nil && json.Valid(b.MetaData.Raw()) {
		rec.MetaData = b.MetaData.Raw()
	}
	if b.NetworkData != nil && json.Valid(b.NetworkData.Raw()) {
		rec.NetworkData = b.NetworkData.Raw()
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return writeAtomic(filepath.Join(s.Dir, storeFile), data)
}

// Load returns the last good set. Without one it returns an error wrapping
// config.ErrNotFound.
func (s Store) Load() (*config.Bundle, *config.Config, error) {
	path := filepath.Join(s.Dir, storeFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("store %s: no last good config: %w", s.Dir, config.ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	var rec stored
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", path, err)
	}
	if rec.Version != 1 {
		return nil, nil, fmt.Errorf("store %s: version %d is not supported", path, rec.Version)
	}
	b := &config.Bundle{Source: rec.Source, UserData: rec.UserData}
	if rec.MetaData != nil {
		if b.MetaData, err = config.ParseMetaData(rec.MetaData); err != nil {
			return nil, nil, fmt.Errorf("store %s: %w", path, err)
		}
	}
	if rec.NetworkData != nil {
		if b.NetworkData, err = config.ParseNetworkData(rec.NetworkData); err != nil {
			return nil, nil, fmt.Errorf("store %s: %w", path, err)
		}
	}
	c, err := config.Parse([]byte(rec.WeftYAML))
	if err != nil {
		return nil, nil, fmt.Errorf("store %s: weft.yaml: %w", path, err)
	}
	return b, c, nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, renamed over path, and the directory synced so that the
// rename survives a power cut.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("store: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("store: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("store: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
