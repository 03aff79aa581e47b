package source

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/config"
)

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir + "/state"}
	if _, _, err := s.Load(); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("empty store: %v", err)
	}
	yml, _ := os.ReadFile("../testdata/weft.yaml")
	md, _ := os.ReadFile("../testdata/meta_data.json")
	nd, _ := os.ReadFile("../testdata/network_data_bond_vlan.json")
	b := &config.Bundle{Source: "config-drive /dev/vda", UserData: yml}
	var err error
	if b.MetaData, err = config.ParseMetaData(md); err != nil {
		t.Fatal(err)
	}
	if b.NetworkData, err = config.ParseNetworkData(nd); err != nil {
		t.Fatal(err)
	}
	c, err := b.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(b, c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir + "/state/" + storeFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored file: %v %v", fi, err)
	}
	b2, c2, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if b2.Source != b.Source || string(b2.UserData) != string(yml) || b2.MetaData.UUID != b.MetaData.UUID ||
		len(b2.NetworkData.Links) != 4 || c2.Summary() != c.Summary() || string(c2.Raw()) != string(yml) {
		t.Errorf("loaded %+v %+v", b2, c2)
	}
	// A second save replaces the first, leaving no temporary files.
	if err := s.Save(&config.Bundle{Source: "url x", UserData: yml}, c); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir + "/state")
	if len(ents) != 1 {
		t.Errorf("store dir holds %d entries", len(ents))
	}
	b3, _, err := s.Load()
	if err != nil || b3.Source != "url x" || b3.MetaData != nil {
		t.Errorf("after second save: %+v %v", b3, err)
	}
	if err := s.Save(b, &config.Config{}); err == nil {
		t.Error("saved a config without a source document")
	}
	os.WriteFile(dir+"/state/"+storeFile, []byte("{"), 0o600)
	if _, _, err := s.Load(); err == nil || errors.Is(err, config.ErrNotFound) {
		t.Errorf("corrupt store: %v", err)
	}
}

// savedBundle is a valid bundle and config whose weft.yaml is the test
// document with its hostname set to name, so that two saves differ.
func savedBundle(t *testing.T, name string) (*config.Bundle, *config.Config) {
	t.Helper()
	yml, err := os.ReadFile("../testdata/weft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yml = bytes.Replace(yml, []byte("hostname: auto"), []byte("hostname: "+name), 1)
	b := &config.Bundle{Source: "url " + name, UserData: yml}
	c, err := b.Config()
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

// A stored file that is cut short, damaged, extended or of another format
// is refused whole, with an error naming the file; nothing of it is
// returned (a half-applied config is worse than none).
func TestStoreRefusesDamaged(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	b, c := savedBundle(t, "node-a")
	if err := s.Save(b, c); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	head := bytes.IndexByte(good, '\n') + 1
	flip := slices.Clone(good)
	i := bytes.Index(flip, []byte("node-a"))
	flip[i] = 'm' // still valid JSON and YAML: only the checksum tells
	v1 := bytes.Replace(good, []byte(storeMagic+" 2 "), []byte(storeMagic+" 1 "), 1)
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "no \"weft-last-good\" header line", nil},
		{"header only", "truncated: 0 of", good[:head]},
		{"half", "truncated:", good[:head+(len(good)-head)/2]},
		{"last byte missing", "truncated:", good[:len(good)-1]},
		{"flipped byte", "SHA-256 does not match", flip},
		{"extra byte", "1 bytes beyond", append(slices.Clone(good), '}')},
		{"other version", "format version 1 is not supported", v1},
		{"no header", "no \"weft-last-good\" header line", good[head:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(s.Path(), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			b, c, err := s.Load()
			if err == nil || b != nil || c != nil {
				t.Fatalf("Load = %v, %v, %v; want a refusal", b, c, err)
			}
			if errors.Is(err, config.ErrNotFound) || !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want one naming %s and saying %q", err, s.Path(), tc.want)
			}
		})
	}
}

// Saves replace the file atomically: a reader loading all the while sees
// the previous set or the new one, never a mix or a partial file, and an
// interrupted write (a temporary file left behind) changes nothing and is
// cleared by the next save.
func TestStoreAtomicReplace(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	ba, ca := savedBundle(t, "node-a")
	bb, cb := savedBundle(t, "node-b")
	if err := s.Save(ba, ca); err != nil {
		t.Fatal(err)
	}
	const saves = 300
	stop, done := make(chan struct{}), make(chan struct{})
	var loads int
	var bad []string
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, c, err := s.Load()
			loads++
			switch {
			case err != nil:
				bad = append(bad, err.Error())
			case !(b.Source == "url node-a" && c.Node.Hostname == "node-a") && !(b.Source == "url node-b" && c.Node.Hostname == "node-b"):
				bad = append(bad, fmt.Sprintf("a mix: source %q, hostname %q", b.Source, c.Node.Hostname))
			}
			if len(bad) > 0 || loads > 100_000 {
				return
			}
		}
	}()
	for i := range saves {
		b, c := ba, ca
		if i%2 == 1 {
			b, c = bb, cb
		}
		if err := s.Save(b, c); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	if len(bad) > 0 {
		t.Fatalf("%d loads during %d saves; a load saw: %s", loads, saves, bad[0])
	}
	t.Logf("%d loads during %d saves, each a whole set", loads, saves)

	// An interrupted write: half a file under a temporary name.
	tmp := filepath.Join(s.Dir, "."+storeFile+".12345")
	if err := os.WriteFile(tmp, []byte("weft-last-good 2 999 sha256:00\n{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _, err := s.Load(); err != nil || b.Source != "url node-b" {
		t.Fatalf("after an interrupted write: %v %v", b, err)
	}
	if err := s.Save(ba, ca); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(s.Dir); len(ents) != 1 {
		t.Errorf("store dir holds %d entries after a save, want the file alone", len(ents))
	}
}
