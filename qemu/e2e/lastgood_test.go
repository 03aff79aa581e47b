package e2e

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/qemu"
)

// stateDisk makes a disk image as an operator would give a node: an MBR
// partition table whose first partition holds a FAT filesystem labelled
// WEFT-STATE (mkfs.vfat -n WEFT-STATE). The disk itself carries no
// filesystem: the node must find the partition by its label.
func stateDisk(t *testing.T) string {
	t.Helper()
	testenv.RequireTools(t, "mkfs.vfat")
	const start, size = 2048, 16 << 20 // first partition at 1 MiB, 16 MiB long
	dir := t.TempDir()
	fs := filepath.Join(dir, "part.img")
	if err := os.WriteFile(fs, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.vfat", "-n", "WEFT-STATE", fs).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.vfat: %v\n%s", err, out)
	}
	part, err := os.ReadFile(fs)
	if err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, start*512, start*512+size)
	e := disk[446:462] // partition entry 1
	e[4] = 0x0e        // FAT16 (LBA)
	binary.LittleEndian.PutUint32(e[8:], start)
	binary.LittleEndian.PutUint32(e[12:], size/512)
	disk[510], disk[511] = 0x55, 0xaa
	img := filepath.Join(dir, "state.img")
	if err := os.WriteFile(img, append(disk, part...), 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

// ctlStatus asks the node's operator console for `ctl status` until the
// answer matches re (the agent may not serve yet) and returns it.
func ctlStatus(t *testing.T, op *operator, re string) string {
	t.Helper()
	return ctlUntil(t, op, "ctl status", re)
}

// ctlUntil sends cmd to the node's operator console until the answer
// matches re and returns it.
func ctlUntil(t *testing.T, op *operator, cmd, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(bootTimeout)
	for {
		op.mu.Lock()
		from := op.buf.Len()
		op.mu.Unlock()
		if _, err := op.c.Write([]byte(cmd + "\n")); err != nil {
			t.Fatalf("operator console: %v", err)
		}
		time.Sleep(2 * time.Second)
		op.mu.Lock()
		out := strings.ReplaceAll(op.buf.String()[from:], "\r", "")
		op.mu.Unlock()
		if rx.MatchString(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never matched %q; last answer:\n%s", cmd, re, out)
		}
	}
}

// TestBootLastGood: a node with a WEFT-STATE partition keeps its last good
// config there. It boots from a config drive, then boots again with the
// drive gone and no metadata service, and comes up on the stored config;
// `weft ctl status` says where it is kept. A node without such a partition
// keeps it in RAM and says so.
func TestBootLastGood(t *testing.T) {
	imageDir(t)
	t.Run("persistent", func(t *testing.T) {
		disk := []string{"-drive", "file=" + stateDisk(t) + ",format=raw,if=virtio"}
		sock := filepath.Join(t.TempDir(), "op.sock")
		vm := boot(t, qemu.Machine{
			Name:            "lastgood-1",
			NICs:            []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{}}},
			ConfigDrive:     configDrive(t, metaData, "", weftYAML),
			ConfigDriveFS:   qemu.FSVFAT, // a disk too: /dev/vda, the state disk /dev/vdb
			OperatorConsole: sock,
			Extra:           disk,
		})
		expect(t, vm, `weft: step=last-good verdict=ok detail="persistent: /dev/vdb1 \(WEFT-STATE\)" dev=/dev/vdb1`)
		expect(t, vm, `msg="last good config saved" source="config-drive /dev/vda"`)
		_, tReady := expect(t, vm, `weft: step=ready verdict=ok config="config-drive /dev/vda"`)
		ctlStatus(t, dialOperator(t, sock), `last good config\s+persistent: /dev/vdb1 \(WEFT-STATE\)`)
		if err := vm.Stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}

		// The second boot: no config drive, nothing at 169.254.169.254.
		sock = filepath.Join(t.TempDir(), "op.sock")
		vm = boot(t, qemu.Machine{
			Name:            "lastgood-2",
			NICs:            []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{}}},
			OperatorConsole: sock,
			Extra:           disk,
		})
		expect(t, vm, `weft: step=last-good verdict=ok detail="persistent: /dev/vda1 \(WEFT-STATE\)"`)
		expect(t, vm, `weft: step=config-drive verdict=skipped`)
		expect(t, vm, `weft: step=config verdict=waiting detail=".*using the last good config from config-drive /dev/vda \(last good\)"`)
		expect(t, vm, `weft: step=hostname verdict=ok .*name=node-a`)
		_, tStored := expect(t, vm, `weft: step=ready verdict=ok config="config-drive /dev/vda \(last good\)"`)
		ctlStatus(t, dialOperator(t, sock), `last good config\s+persistent: /dev/vda1 \(WEFT-STATE\)`)
		if strings.Contains(vm.Console(), "step=last-good verdict=failed") {
			t.Error("a last-good failure on a good disk")
		}
		figures(t, "last-good", "s-to-ready-config-drive", tReady, "s-to-ready-stored", tStored)
	})
	t.Run("RAM only", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "op.sock")
		vm := boot(t, qemu.Machine{
			Name:            "lastgood-ram",
			NICs:            []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{}}},
			ConfigDrive:     configDrive(t, metaData, "", weftYAML),
			OperatorConsole: sock,
		})
		expect(t, vm, `weft: step=last-good verdict=skipped detail="RAM only: lost at reboot \(no filesystem labelled WEFT-STATE`)
		expect(t, vm, `weft: step=ready verdict=ok`)
		out := ctlStatus(t, dialOperator(t, sock), `last good config\s+RAM only: lost at reboot`)
		t.Logf("ctl status:\n%s", out)
	})
}
