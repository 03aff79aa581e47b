// Package cloud runs real Keystone and Neutron (Debian's packages) on
// 127.0.0.1 with SQLite for the OpenStack tests: no database server, no
// message queue. Start costs ~20 s and each password authentication
// ~0.5 s, so a test package starts one Cloud in TestMain and shares it.
// The services are stopped by their PIDs.
package cloud

import (
	"context"

	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/endpoints"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/services"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
)

// Tools are the programs Start needs (the Makefile's openstack-deps).
var Tools = []string{"keystone-manage", "uwsgi", "neutron-server", "neutron-db-manage", "sqlite3", "/usr/bin/python3"}

// Password is the admin's and the services' password.
const Password = "secret"

// Region is the catalog's region.
const Region = "RegionOne"

// Cloud is a running Keystone and Neutron.
type Cloud struct {
	Dir        string
	AuthURL    string // http://127.0.0.1:PORT/v3
	NeutronURL string
	procs      []*exec.Cmd
}

// Missing names the first of Tools not on PATH, "" when all are there.
func Missing() string {
	for _, n := range Tools {
		if _, err := exec.LookPath(n); err != nil {
			return n
		}
	}
	return ""
}

// Start starts Keystone and Neutron with their state in dir.
func Start(ctx context.Context, dir string) (*Cloud, error) {
	kp, err := freePort()
	if err != nil {
		return nil, err
	}
	np, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &Cloud{Dir: dir, AuthURL: fmt.Sprintf("http://127.0.0.1:%d/v3", kp), NeutronURL: fmt.Sprintf("http://127.0.0.1:%d", np)}
	if err := c.startKeystone(ctx, kp); err != nil {
		c.Stop()
		return nil, fmt.Errorf("keystone: %w", err)
	}
	if err := c.register(ctx); err != nil {
		c.Stop()
		return nil, fmt.Errorf("keystone: registering neutron: %w", err)
	}
	if err := c.startNeutron(ctx, kp, np); err != nil {
		c.Stop()
		return nil, fmt.Errorf("neutron: %w", err)
	}
	return c, nil
}

// Stop stops the services by their PIDs (each leads its process group).
func (c *Cloud) Stop() {
	for _, p := range c.procs {
		if p.Process != nil {
			syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
	}
	c.procs = nil
}

// Admin is a provider client authenticated as the cloud's admin.
func (c *Cloud) Admin(ctx context.Context) (*gophercloud.ProviderClient, error) {
	return gopenstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: c.AuthURL, Username: "admin", Password: Password,
		DomainName: "Default", Scope: &gophercloud.AuthScope{ProjectName: "admin", DomainName: "Default"}})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run(dir string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out))
	}
	return nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// spawn starts a service in its own process group, its output in log.
func (c *Cloud) spawn(log string, env []string, name string, args ...string) error {
	f, err := os.Create(log)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// waitHTTP waits until url answers (any status).
func waitHTTP(ctx context.Context, url, log string) error {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	b, _ := os.ReadFile(log)
	return fmt.Errorf("%s did not answer in 90 s; log:\n%s", url, tail(b))
}

func (c *Cloud) startKeystone(ctx context.Context, port int) error {
	k := filepath.Join(c.Dir, "keystone")
	for _, d := range []string{"fernet-keys", "credential-keys", "log"} {
		if err := os.MkdirAll(filepath.Join(k, d), 0o700); err != nil {
			return err
		}
	}
	conf := filepath.Join(k, "keystone.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[DEFAULT]
log_dir = %[1]s/log
[database]
connection = sqlite:///%[1]s/keystone.db
[fernet_tokens]
key_repository = %[1]s/fernet-keys
[fernet_receipts]
key_repository = %[1]s/fernet-keys
[credential]
key_repository = %[1]s/credential-keys
`, k)), 0o600); err != nil {
		return err
	}
	km := func(args ...string) error {
		return run(k, "keystone-manage", append([]string{"--config-file", conf}, args...)...)
	}
	user := strconv.Itoa(os.Getuid())
	if u := os.Getenv("USER"); u != "" {
		user = u
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/v3/", port)
	for _, step := range [][]string{
		{"db_sync"},
		{"fernet_setup", "--keystone-user", user, "--keystone-group", user},
		{"credential_setup", "--keystone-user", user, "--keystone-group", user},
	} {
		if err := km(step...); err != nil {
			return err
		}
	}
	// WAL: uwsgi's two processes share the file; without it "database is locked".
	if err := run(k, "sqlite3", filepath.Join(k, "keystone.db"), "PRAGMA journal_mode=WAL;"); err != nil {
		return err
	}
	if err := km("bootstrap", "--bootstrap-password", Password, "--bootstrap-region-id", Region,
		"--bootstrap-admin-url", url, "--bootstrap-internal-url", url, "--bootstrap-public-url", url); err != nil {
		return err
	}
	// --http11-socket: Go's keep-alive POSTs break on --http-socket;
	// --threads 1: Keystone's SQLite objects are bound to their thread.
	log := filepath.Join(k, "log", "uwsgi.log")
	if err := c.spawn(log, []string{"OS_KEYSTONE_CONFIG_FILES=" + conf}, "uwsgi", "--plugin", "python3",
		"--http11-socket", fmt.Sprintf("127.0.0.1:%d", port), "--wsgi-file", "/usr/bin/keystone-wsgi-public",
		"--master", "--processes", "2", "--threads", "1", "--lazy-apps", "--die-on-term", "--buffer-size", "65535"); err != nil {
		return err
	}
	return waitHTTP(ctx, c.AuthURL, log)
}

// register creates Neutron's service user and its catalog entries.
func (c *Cloud) register(ctx context.Context) error {
	pc, err := c.Admin(ctx)
	if err != nil {
		return err
	}
	id, err := gopenstack.NewIdentityV3(pc, gophercloud.EndpointOpts{})
	if err != nil {
		return err
	}
	proj, err := projects.Create(ctx, id, projects.CreateOpts{Name: "service", DomainID: "default"}).Extract()
	if err != nil {
		return fmt.Errorf("project: %w", err)
	}
	u, err := users.Create(ctx, id, users.CreateOpts{Name: "neutron", DomainID: "default", Password: Password}).Extract()
	if err != nil {
		return fmt.Errorf("user: %w", err)
	}
	pages, err := roles.List(id, roles.ListOpts{Name: "admin"}).AllPages(ctx)
	if err != nil {
		return err
	}
	rs, err := roles.ExtractRoles(pages)
	if err != nil || len(rs) == 0 {
		return fmt.Errorf("no admin role: %v", err)
	}
	if err := roles.Assign(ctx, id, rs[0].ID, roles.AssignOpts{UserID: u.ID, ProjectID: proj.ID}).ExtractErr(); err != nil {
		return fmt.Errorf("role: %w", err)
	}
	svc, err := services.Create(ctx, id, services.CreateOpts{Type: "network", Extra: map[string]any{"name": "neutron"}}).Extract()
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	for _, av := range []gophercloud.Availability{gophercloud.AvailabilityPublic, gophercloud.AvailabilityInternal} {
		if _, err := endpoints.Create(ctx, id, endpoints.CreateOpts{Availability: av, Region: Region, URL: c.NeutronURL, ServiceID: svc.ID}).Extract(); err != nil {
			return fmt.Errorf("endpoint: %w", err)
		}
	}
	return nil
}

func (c *Cloud) startNeutron(ctx context.Context, kport, nport int) error {
	n := filepath.Join(c.Dir, "neutron")
	for _, d := range []string{"log", "state", "lock", "ext/weft_noopbind", "ext/weft_noopbind-0.1.dist-info"} {
		if err := os.MkdirAll(filepath.Join(n, d), 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{
		"neutron.conf": fmt.Sprintf(`[DEFAULT]
bind_host = 127.0.0.1
bind_port = %[2]d
core_plugin = ml2
auth_strategy = keystone
transport_url = fake:/
api_workers = 0
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
log_dir = %[1]s/log
state_path = %[1]s/state
[database]
connection = sqlite:///%[1]s/neutron.db
[oslo_concurrency]
lock_path = %[1]s/lock
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:%[3]d
auth_url = http://127.0.0.1:%[3]d
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = neutron
password = %[4]s
region_name = %[5]s
`, n, nport, kport, Password, Region),
		"ml2_conf.ini": `[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = weftnoop
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:200
[ml2_type_vxlan]
vni_ranges = 1:5000
`,
		// An agentless mechanism driver: it binds every port as Weft's
		// would (vif_type tap: Nova's libvirt driver creates a plain tap
		// that the vRouter takes with AF_PACKET), as no OVS or Linux
		// bridge agent runs here.
		"ext/weft_noopbind/__init__.py": `from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api


class NoopBindDriver(api.MechanismDriver):
    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for seg in context.segments_to_bind:
            context.set_binding(seg[api.ID], portbindings.VIF_TYPE_TAP,
                                {portbindings.CAP_PORT_FILTER: False},
                                status=constants.PORT_STATUS_ACTIVE)
            return
`,
		"ext/weft_noopbind-0.1.dist-info/METADATA":         "Metadata-Version: 2.1\nName: weft-noopbind\nVersion: 0.1\n",
		"ext/weft_noopbind-0.1.dist-info/entry_points.txt": "[neutron.ml2.mechanism_drivers]\nweftnoop = weft_noopbind:NoopBindDriver\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(n, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	db := "sqlite:///" + filepath.Join(n, "neutron.db")
	// Neutron's migrations ALTER constraints, which SQLite cannot: the
	// schema comes from the models (as Neutron's unit tests make it),
	// then the migrations are stamped as done.
	// /usr/bin/python3: Debian's, with Neutron's modules (PATH may lead elsewhere).
	if err := run(n, "/usr/bin/python3", "-c", `import sys
from sqlalchemy import create_engine
from neutron.db.migration.models import head
from neutron_lib.db import model_base
model_base.BASEV2.metadata.create_all(create_engine(sys.argv[1]))`, db); err != nil {
		return err
	}
	confs := []string{"--config-file", filepath.Join(n, "neutron.conf"), "--config-file", filepath.Join(n, "ml2_conf.ini")}
	if err := run(n, "neutron-db-manage", append(confs, "stamp", "heads")...); err != nil {
		return err
	}
	if err := run(n, "sqlite3", filepath.Join(n, "neutron.db"), "PRAGMA journal_mode=WAL;"); err != nil {
		return err
	}
	log := filepath.Join(n, "log", "stdout.log")
	if err := c.spawn(log, []string{"PYTHONPATH=" + filepath.Join(n, "ext")}, "neutron-server", confs...); err != nil {
		return err
	}
	return waitHTTP(ctx, c.NeutronURL+"/", log)
}
