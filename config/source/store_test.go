package source

import (
	"errors"
	"os"
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
