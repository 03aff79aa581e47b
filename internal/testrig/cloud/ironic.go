package cloud

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// IronicTools are the programs StartIronic needs (the Makefile's
// ironic-deps).
var IronicTools = []string{"ironic", "ironic-dbsync", "sqlite3"}

// MissingIronic names the first of IronicTools not on PATH, "" when all are.
func MissingIronic() string {
	for _, n := range IronicTools {
		if _, err := exec.LookPath(n); err != nil {
			return n
		}
	}
	return ""
}

// Ironic is a running Ironic: API and conductor in one process
// (/usr/bin/ironic), no message queue (rpc_transport = none), SQLite, no
// Keystone (auth_strategy = noauth). Its only hardware type is
// fake-hardware: no BMC exists here, so power and management are fake and
// the conductor cannot see a node power itself off. Nodes deploy with
// the custom-agent deploy interface, which asks the agent for its deploy
// steps and tears it down with standby.power_off.
type Ironic struct {
	Dir string
	URL string // http://127.0.0.1:PORT
	Log string // the process's log: the conductor's too
	cmd *exec.Cmd
}

// StartIronic starts Ironic with its state in dir. heartbeat is what
// lookups hand agents as heartbeat_timeout.
func StartIronic(ctx context.Context, dir string, heartbeat time.Duration) (*Ironic, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := filepath.Join(dir, "ironic")
	for _, s := range []string{"log", "state", "lock"} {
		if err := os.MkdirAll(filepath.Join(d, s), 0o700); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(d, "ironic.conf")
	// post_deploy_get_power_state_*: after the agent's power_off the
	// conductor polls the power interface; the fake one never reports
	// off, so it waits 1 s, not 30, before it powers off itself.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[DEFAULT]
host = weft-test-conductor
auth_strategy = noauth
rpc_transport = none
enabled_hardware_types = fake-hardware
enabled_boot_interfaces = fake
enabled_deploy_interfaces = fake,custom-agent
enabled_management_interfaces = fake
enabled_power_interfaces = fake
enabled_inspect_interfaces = no-inspect
enabled_console_interfaces = no-console
enabled_raid_interfaces = no-raid
enabled_vendor_interfaces = no-vendor
enabled_bios_interfaces = no-bios
enabled_rescue_interfaces = no-rescue
enabled_network_interfaces = noop
enabled_storage_interfaces = noop
log_dir = %[1]s/log
state_path = %[1]s/state
[api]
host_ip = 127.0.0.1
port = %[2]d
api_workers = 1
ramdisk_heartbeat_timeout = %[3]d
[agent]
post_deploy_get_power_state_retries = 1
post_deploy_get_power_state_retry_interval = 1
[conductor]
automated_clean = false
[dhcp]
dhcp_provider = none
[database]
connection = sqlite:///%[1]s/ironic.db
[oslo_concurrency]
lock_path = %[1]s/lock
[service_catalog]
auth_type = none
endpoint_override = http://127.0.0.1:%[2]d
`, d, port, int(heartbeat/time.Second))), 0o600); err != nil {
		return nil, err
	}
	if err := run(d, "ironic-dbsync", "--config-file", conf, "create_schema"); err != nil {
		return nil, err
	}
	if err := run(d, "sqlite3", filepath.Join(d, "ironic.db"), "PRAGMA journal_mode=WAL;"); err != nil {
		return nil, err
	}
	ir := &Ironic{Dir: d, URL: fmt.Sprintf("http://127.0.0.1:%d", port), Log: filepath.Join(d, "log", "ironic.log")}
	f, err := os.Create(filepath.Join(d, "log", "stdout.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ir.cmd = exec.Command("ironic", "--config-file", conf)
	ir.cmd.Stdout, ir.cmd.Stderr = f, f
	ir.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ir.cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, ir.URL+"/", f.Name()); err != nil {
		ir.Stop()
		return nil, fmt.Errorf("ironic: %w", err)
	}
	return ir, nil
}

// Stop stops Ironic by its PID (it leads its process group).
func (ir *Ironic) Stop() {
	c := &Cloud{procs: []*exec.Cmd{ir.cmd}}
	c.Stop()
}
