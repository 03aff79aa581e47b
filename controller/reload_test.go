package controller

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReload: the controller follows its inventory file and configFile as
// they change, and keeps serving the last good inventory when a change is
// refused, saying why.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	inventory := filepath.Join(dir, "fleet.yaml")
	weft := filepath.Join(dir, "weft.yaml")
	write := func(path, text string) {
		t.Helper()
		// Through a rename, as editors and config management do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	goodWeft := "bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2}]\n"
	write(weft, goodWeft)
	write(inventory, "configFile: weft.yaml\nnodes:\n  - {name: node-a, address: 10.0.2.15}\n")

	s, err := New(Options{State: t.TempDir(), Inventory: inventory, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WatchInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 5 s; fleet %+v", what, s.Fleet())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	write(inventory, "configFile: weft.yaml\nnodes:\n  - {name: node-a, address: 10.0.2.15}\n  - {name: node-b, address: 10.0.2.16}\n")
	wait("node added", func() bool { return s.Inventory().Node("node-b") != nil })

	// A bad inventory: refused, the last good one stays, the fleet says why.
	write(inventory, "configFile: weft.yaml\nnodes:\n  - {name: node-a, address: 10.0.2.15}\n  - {name: node-a, address: 10.0.2.16}\n")
	wait("refusal reported", func() bool {
		return strings.Contains(s.Fleet().InventoryError, `nodes[1].name (line 4): "node-a" is already the name of nodes[0]`)
	})
	if s.Inventory().Node("node-b") == nil {
		t.Error("the last good inventory was not kept")
	}
	// A bad configFile: refused too, naming that file.
	write(inventory, "configFile: weft.yaml\nnodes:\n  - {name: node-a, address: 10.0.2.15}\n")
	wait("good again", func() bool { return s.Fleet().InventoryError == "" && s.Inventory().Node("node-b") == nil })
	write(weft, "bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2, port: 70000}]\n")
	wait("configFile refusal", func() bool {
		return strings.Contains(s.Fleet().InventoryError, weft+": bgp.controllers[0].port (line 3): 70000 is out of range")
	})
	if got := string(s.Inventory().UserData); got != goodWeft {
		t.Errorf("user_data while the configFile is bad: %q", got)
	}
	write(weft, strings.Replace(goodWeft, "64512", "64513", 1))
	wait("configFile change", func() bool { return s.Inventory().Config.BGP.ASN == 64513 && s.Fleet().InventoryError == "" })

	// SIGHUP's path: an explicit reload, also of an unchanged file.
	if err := s.Reload(); err != nil {
		t.Errorf("reloading an unchanged inventory: %v", err)
	}
	os.Remove(inventory)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("reloading a removed inventory: %v", err)
	}
	if s.Inventory().Node("node-a") == nil {
		t.Error("the last good inventory was not kept")
	}
}
