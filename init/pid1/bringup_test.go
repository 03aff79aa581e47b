package pid1

// These tests drive the bring-up sequence with fakes standing in for the
// hardware and the network: the config drive, the metadata service, the
// underlay (NICs, DHCP), the last-good store and the clock. They check the
// orchestration (order, retries, last good, verdicts); the real pieces are
// tested in their own packages and together by the lead's QEMU end-to-end
// tests, which boot the image.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/config/source"
	"github.com/weftnet/weft/init/steps"
)

const (
	goodYAML    = "node:\n  hostname: n1\n"
	goodYAML2   = "node:\n  hostname: n2\n"
	invalidYAML = "bgp:\n  asn: banana\n"
	cloudConfig = "#cloud-config\npackages: [htop]\n"
)

// events is the shared, ordered log of what the fakes were asked to do.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, fmt.Sprintf(format, args...))
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

func (e *events) index(prefix string) int {
	for i, s := range e.list() {
		if strings.HasPrefix(s, prefix) {
			return i
		}
	}
	return -1
}

func (e *events) count(prefix string) int {
	n := 0
	for _, s := range e.list() {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// fetchResult is one answer of a fake source.
type fetchResult struct {
	bundle *config.Bundle
	err    error
}

// fakeSource stands in for the config drive, the metadata service or a URL:
// it answers from results in turn, repeating the last one.
type fakeSource struct {
	name    string
	ev      *events
	results []fetchResult
	n       int
}

func (s *fakeSource) Name() string { return s.name }

func (s *fakeSource) Fetch(ctx context.Context) (*config.Bundle, error) {
	s.ev.add("fetch %s", s.name)
	r := s.results[min(s.n, len(s.results)-1)]
	s.n++
	return r.bundle, r.err
}

// fakeUnderlay stands in for init/underlay's Manager and the NICs.
type fakeUnderlay struct {
	ev         *events
	fail       int    // the first fail calls return an error
	failSource string // and every call for an underlay of this source
	calls      int
	applied    []config.Underlay
}

func (u *fakeUnderlay) Apply(ctx context.Context, ul config.Underlay) error {
	u.calls++
	u.ev.add("underlay apply %s", ul.Source)
	if u.calls <= u.fail || ul.Source == u.failSource && u.failSource != "" {
		return errors.New("eth0: no DHCP offer")
	}
	u.applied = append(u.applied, ul)
	return nil
}

// fakeStore stands in for source.Store on disk.
type fakeStore struct {
	ev     *events
	bundle *config.Bundle
	cfg    *config.Config
}

func (s *fakeStore) Save(b *config.Bundle, c *config.Config) error {
	s.ev.add("store save %s", b.Source)
	s.bundle, s.cfg = b, c
	return nil
}

func (s *fakeStore) Load() (*config.Bundle, *config.Config, error) {
	if s.cfg == nil {
		return nil, nil, config.ErrNotFound
	}
	return s.bundle, s.cfg, nil
}

// fakeClock never waits: Sleep records the delay and advances Now. After
// cancelAfter sleeps (0: never) it cancels the context, ending Run.
type fakeClock struct {
	mu          sync.Mutex
	now         time.Time
	step        time.Duration // added by every Now call
	sleeps      []time.Duration
	cancelAfter int
	cancel      context.CancelFunc
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	n := len(c.sleeps)
	c.mu.Unlock()
	if c.cancelAfter > 0 && n >= c.cancelAfter && c.cancel != nil {
		c.cancel()
	}
	return ctx.Err()
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}

// fakeRec records verdicts as steps.Recorder would print them.
type fakeRec struct {
	mu    sync.Mutex
	steps []steps.Step
}

func (r *fakeRec) Report(name string, v steps.Verdict, detail string, attrs ...any) {
	s := steps.Step{Name: name, Verdict: v, Detail: detail, Attrs: map[string]string{}}
	for i := 0; i+1 < len(attrs); i += 2 {
		s.Attrs[fmt.Sprint(attrs[i])] = fmt.Sprint(attrs[i+1])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, s)
}

func (r *fakeRec) all() []steps.Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.steps)
}

// names returns the step names in report order, consecutive repeats folded.
func (r *fakeRec) names() []string {
	var out []string
	for _, s := range r.all() {
		if len(out) == 0 || out[len(out)-1] != s.Name {
			out = append(out, s.Name)
		}
	}
	return out
}

// last returns the last verdict of a step.
func (r *fakeRec) last(name string) (steps.Step, bool) {
	all := r.all()
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Name == name {
			return all[i], true
		}
	}
	return steps.Step{}, false
}

func (r *fakeRec) lines() string {
	var b strings.Builder
	for _, s := range r.all() {
		b.WriteString(s.Line() + "\n")
	}
	return b.String()
}

// harness wires a Bringup to fakes.
type harness struct {
	ev       events
	rec      fakeRec
	clock    *fakeClock
	drive    *fakeSource
	meta     *fakeSource
	url      *fakeSource
	net      *fakeUnderlay
	store    *fakeStore
	applied  []Applied
	b        *Bringup
	ctx      context.Context
	cancel   context.CancelFunc
	bootif   net.HardwareAddr
	prepared []config.Underlay
}

func newHarness(t *testing.T) *harness {
	h := &harness{clock: newFakeClock()}
	h.ctx, h.cancel = context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(h.cancel)
	h.clock.cancel = h.cancel
	h.drive = &fakeSource{name: "config-drive", ev: &h.ev, results: []fetchResult{{err: fmt.Errorf("no filesystem labelled config-2: %w", config.ErrNotFound)}}}
	h.meta = &fakeSource{name: "metadata", ev: &h.ev, results: []fetchResult{{err: errors.New(`Get "http://169.254.169.254/openstack/latest/meta_data.json": dial tcp 169.254.169.254:80: connect: network is unreachable`)}}}
	h.url = &fakeSource{name: "url", ev: &h.ev, results: []fetchResult{{err: errors.New("connection refused")}}}
	h.net = &fakeUnderlay{ev: &h.ev}
	h.store = &fakeStore{ev: &h.ev}
	h.b = &Bringup{
		Rec:         &h.rec,
		Clock:       h.clock,
		Drive:       h.drive,
		NewURL:      func(string) source.Source { return h.url },
		NewMetadata: func() source.Source { return h.meta },
		Underlay:    h.net,
		DefaultUnderlay: func(bootif net.HardwareAddr) (config.Underlay, error) {
			h.ev.add("default underlay")
			h.bootif = bootif
			return config.Underlay{Links: []config.Link{{ID: "eth0", Kind: config.LinkPhy, DHCP4: true}}}, nil
		},
		PrepareUnderlay: func(u config.Underlay) { h.prepared = append(h.prepared, u) },
		Store:           h.store,
		Apply: func(ctx context.Context, a Applied) error {
			h.ev.add("apply config %s lastgood=%v hostname=%s", a.Source, a.LastGood, a.Config.Node.Hostname)
			h.applied = append(h.applied, a)
			return nil
		},
	}
	return h
}

func (h *harness) run(t *testing.T) error {
	t.Helper()
	err := h.b.Run(h.ctx)
	t.Logf("console:\n%s", h.rec.lines())
	t.Logf("events: %q", h.ev.list())
	t.Logf("sleeps: %v", h.clock.slept())
	return err
}

func bundle(source, userData string) *config.Bundle {
	b := &config.Bundle{Source: source}
	if userData != "" {
		b.UserData = []byte(userData)
	}
	return b
}

func TestBringupOrderLinksBeforeMetadata(t *testing.T) {
	h := newHarness(t)
	h.b.Cmdline.BootIF = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", goodYAML)}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ev := h.ev.list()
	want := []string{
		"fetch config-drive",
		"default underlay",
		"underlay apply default (DHCP)",
		"fetch metadata",
		"store save metadata http://169.254.169.254/",
		"apply config metadata http://169.254.169.254/ lastgood=false hostname=n1",
	}
	if !slices.Equal(ev, want) {
		t.Errorf("events:\n got %q\nwant %q", ev, want)
	}
	if h.bootif.String() != "52:54:00:00:00:01" {
		t.Errorf("DefaultUnderlay got BOOTIF %v", h.bootif)
	}
	wantSteps := []string{StepConfigDrive, StepUnderlay, StepMetadata, StepConfig, StepReady}
	if got := h.rec.names(); !slices.Equal(got, wantSteps) {
		t.Errorf("steps:\n got %q\nwant %q", got, wantSteps)
	}
	if s, _ := h.rec.last(StepReady); s.Verdict != steps.OK {
		t.Errorf("ready: %s", s.Line())
	}
	if len(h.clock.slept()) != 0 {
		t.Errorf("a clean boot slept %v", h.clock.slept())
	}
}

func TestBringupLinksDownMeansNoFetch(t *testing.T) {
	h := newHarness(t)
	h.net.fail = 3
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", goodYAML)}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if i, j := h.ev.index("underlay apply"), h.ev.index("fetch metadata"); j < 0 || j < i {
		t.Fatalf("fetch at %d, underlay at %d", j, i)
	}
	// Three failed applies, no fetch between them; the fetch follows the
	// fourth, successful one.
	ev := h.ev.list()
	if first := h.ev.index("fetch metadata"); h.ev.count("underlay apply") != 4 || !strings.HasPrefix(ev[first-1], "underlay apply") || h.net.calls != 4 {
		t.Errorf("events %q", ev)
	}
	if h.ev.count("fetch metadata") != 1 {
		t.Errorf("metadata fetched %d times", h.ev.count("fetch metadata"))
	}
	var failed bool
	for _, s := range h.rec.all() {
		if s.Name == StepUnderlay && s.Verdict == steps.Failed {
			failed = true
			if !strings.Contains(s.Detail, "no usable link") || !strings.Contains(s.Detail, "check") {
				t.Errorf("underlay failure says neither what nor what to check: %s", s.Line())
			}
		}
		if s.Name == StepMetadata && s.Verdict == steps.Waiting && !strings.Contains(s.Detail, "no usable underlay link") {
			t.Errorf("metadata waiting for the wrong reason: %s", s.Line())
		}
	}
	if !failed {
		t.Error("no underlay failure reported")
	}
	if got := h.clock.slept(); !slices.Equal(got, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}) {
		t.Errorf("sleeps %v", got)
	}
}

func TestBringupRetriesUnreachableMetadata(t *testing.T) {
	h := newHarness(t)
	unreachable := h.meta.results[0]
	for range 8 {
		h.meta.results = append(h.meta.results, unreachable)
	}
	h.meta.results = append(h.meta.results, fetchResult{bundle: bundle("metadata http://169.254.169.254/", goodYAML)})
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if got := h.clock.slept(); !slices.Equal(got, want) {
		t.Errorf("backoff: got %v, want %v", got, want)
	}
	if h.ev.count("fetch metadata") != 10 {
		t.Errorf("metadata fetched %d times, want 10", h.ev.count("fetch metadata"))
	}
	var waiting steps.Step
	for _, s := range h.rec.all() {
		if s.Name == StepConfig && s.Verdict == steps.Waiting {
			waiting = s
			break
		}
	}
	if !strings.HasPrefix(waiting.Detail, "no config drive, metadata unreachable: ") || !strings.Contains(waiting.Detail, "network is unreachable") {
		t.Errorf("config waiting verdict does not say what was tried: %s", waiting.Line())
	}
	if s, _ := h.rec.last(StepConfig); s.Verdict != steps.OK {
		t.Errorf("final config verdict: %s", s.Line())
	}
	if s, _ := h.rec.last(StepReady); s.Verdict != steps.OK {
		t.Errorf("final ready verdict: %s", s.Line())
	}
}

func TestBringupKeepsLastGoodOnInvalidConfig(t *testing.T) {
	h := newHarness(t)
	good, err := bundle("metadata http://169.254.169.254/", goodYAML2).Config()
	if err != nil {
		t.Fatal(err)
	}
	h.store.bundle, h.store.cfg = bundle("metadata http://169.254.169.254/", goodYAML2), good
	h.meta.results = []fetchResult{
		{bundle: bundle("metadata http://169.254.169.254/", invalidYAML)},
		{bundle: bundle("metadata http://169.254.169.254/", invalidYAML)},
		{bundle: bundle("metadata http://169.254.169.254/", goodYAML)},
	}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(h.applied) != 2 || !h.applied[0].LastGood || h.applied[0].Config.Node.Hostname != "n2" ||
		h.applied[1].LastGood || h.applied[1].Config.Node.Hostname != "n1" {
		t.Fatalf("applied %+v, want the last good (n2) then the new good (n1)", h.applied)
	}
	var failed []steps.Step
	for _, s := range h.rec.all() {
		if s.Name == StepConfig && s.Verdict == steps.Failed {
			failed = append(failed, s)
		}
	}
	// Reported once: the second identical failure is not printed again.
	if len(failed) != 1 {
		t.Fatalf("config failures reported %d times", len(failed))
	}
	d := failed[0].Detail
	for _, want := range []string{"bgp.asn (line 2)", `expected an integer, got "banana"`, "using the last good config from metadata http://169.254.169.254/ (last good)"} {
		if !strings.Contains(d, want) {
			t.Errorf("config failure %q lacks %q", d, want)
		}
	}
	if strings.Count(d, "metadata http://169.254.169.254/: ") != 1 {
		t.Errorf("source named more than once: %q", d)
	}
	// Ready with the last good config while the fetch is retried.
	var readyLastGood bool
	for _, s := range h.rec.all() {
		if s.Name == StepReady && s.Verdict == steps.OK && strings.HasSuffix(s.Attrs["config"], "(last good)") {
			readyLastGood = true
		}
	}
	if !readyLastGood {
		t.Error("not ready on the last good config")
	}
	if h.store.cfg.Node.Hostname != "n1" {
		t.Errorf("the new good config was not saved as last good")
	}
}

func TestBringupInvalidWithoutLastGoodWaits(t *testing.T) {
	h := newHarness(t)
	h.clock.cancelAfter = 3
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", invalidYAML)}}
	if err := h.run(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if len(h.applied) != 0 {
		t.Errorf("applied %+v", h.applied)
	}
	s, _ := h.rec.last(StepConfig)
	if s.Verdict != steps.Failed || !strings.Contains(s.Detail, "no last good config") {
		t.Errorf("config: %s", s.Line())
	}
	if s, _ := h.rec.last(StepReady); s.Verdict != steps.Waiting {
		t.Errorf("ready: %s", s.Line())
	}
	if n := h.ev.count("fetch metadata"); n != 3 {
		t.Errorf("metadata fetched %d times, want 3 (retried)", n)
	}
}

func TestBringupCloudConfigIsNotOurs(t *testing.T) {
	h := newHarness(t)
	h.clock.cancelAfter = 2
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", cloudConfig)}}
	if err := h.run(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if len(h.applied) != 0 || h.store.cfg != nil {
		t.Fatalf("cloud-config was applied or saved")
	}
	s, _ := h.rec.last(StepConfig)
	want := "no config drive, metadata http://169.254.169.254/: user_data is #cloud-config, not weft.yaml, ignored"
	if s.Verdict != steps.Waiting || s.Detail != want {
		t.Errorf("config verdict:\n got %s\nwant detail %q", s.Line(), want)
	}
}

func TestBringupNoSourceAtAll(t *testing.T) {
	h := newHarness(t)
	h.clock.cancelAfter = 6
	if err := h.run(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	s, _ := h.rec.last(StepConfig)
	if s.Verdict != steps.Waiting || !strings.HasPrefix(s.Detail, "no config drive, metadata unreachable: Get ") {
		t.Errorf("config: %s", s.Line())
	}
	r, _ := h.rec.last(StepReady)
	if r.Verdict != steps.Waiting || r.Detail != "no valid config (step=config)" {
		t.Errorf("ready: %s", r.Line())
	}
	if n := h.ev.count("fetch metadata"); n != 6 {
		t.Errorf("metadata fetched %d times, want 6", n)
	}
	// Quiet retries: the same verdicts are not printed on every pass.
	if n := strings.Count(h.rec.lines(), "step=config "); n != 1 {
		t.Errorf("config verdict printed %d times", n)
	}
}

func TestBringupConfigURL(t *testing.T) {
	h := newHarness(t)
	h.b.Cmdline.ConfigURL = "http://10.0.2.2:8080/weft.yaml"
	h.url.results = []fetchResult{{bundle: bundle("url http://10.0.2.2:8080/weft.yaml", goodYAML)}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if h.ev.count("fetch metadata") != 0 || h.ev.count("fetch url") != 1 {
		t.Errorf("events %q", h.ev.list())
	}
	if got := h.rec.names(); !slices.Contains(got, StepURL) || slices.Contains(got, StepMetadata) {
		t.Errorf("steps %q", got)
	}
}

const driveNetworkData = `{
  "links": [
    {"id": "l0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01", "mtu": 9000},
    {"id": "l1", "type": "weird"},
    {"id": "l2", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02"},
    {"id": "bond0", "type": "bond", "bond_links": ["l0", "l2"], "bond_mode": "active-backup"},
    {"id": "vlan100", "type": "vlan", "vlan_link": "bond0", "vlan_id": 100}
  ],
  "networks": [{"id": "n0", "link": "vlan100", "type": "ipv4", "ip_address": "192.0.2.10", "netmask": "255.255.255.0"}]
}`

func TestBringupConfigDriveNetworkDataAndConfig(t *testing.T) {
	h := newHarness(t)
	nd, err := config.ParseNetworkData([]byte(driveNetworkData))
	if err != nil {
		t.Fatal(err)
	}
	drive := bundle("config-drive /dev/vda", goodYAML)
	drive.NetworkData = nd
	h.drive.results = []fetchResult{{bundle: drive}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if h.ev.count("default underlay") != 0 || h.ev.count("fetch metadata") != 0 {
		t.Errorf("events %q", h.ev.list())
	}
	if len(h.net.applied) != 1 || h.net.applied[0].Source != "config-drive /dev/vda network_data.json" {
		t.Fatalf("underlay applied: %+v", h.net.applied)
	}
	if len(h.prepared) != 1 {
		t.Errorf("PrepareUnderlay called %d times", len(h.prepared))
	}
	// An unknown type is a NIC with a warning (as cloud-init); this one
	// then fails for having no MAC.
	var warned, failed bool
	for _, s := range h.rec.all() {
		if s.Name == StepNetworkData && s.Verdict == steps.Warning && s.Attrs["path"] == "links[1].type" && s.Attrs["link"] == "l1" && strings.Contains(s.Detail, `"weird" is not a known link type`) {
			warned = true
		}
		if s.Name == StepNetworkData && s.Verdict == steps.Failed && s.Attrs["path"] == "links[1].ethernet_mac_address" && s.Attrs["link"] == "l1" {
			failed = true
		}
	}
	if !warned || !failed {
		t.Errorf("the unknown link type: warned %v, missing MAC failed %v", warned, failed)
	}
	if s, _ := h.rec.last(StepMetadata); s.Verdict != steps.Skipped {
		t.Errorf("metadata: %s", s.Line())
	}
	wantSteps := []string{StepConfigDrive, StepNetworkData, StepUnderlay, StepMetadata, StepConfig, StepReady}
	if got := h.rec.names(); !slices.Equal(got, wantSteps) {
		t.Errorf("steps:\n got %q\nwant %q", got, wantSteps)
	}
}

func TestBringupDriveWeftUnderlay(t *testing.T) {
	h := newHarness(t)
	yaml := "node:\n  hostname: n1\nunderlay:\n  links:\n    - match: {mac: \"52:54:00:00:00:01\"}\n      dhcp: true\n      mtu: 9000\n"
	h.drive.results = []fetchResult{{bundle: bundle("config-drive /dev/vda", yaml)}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(h.net.applied) != 1 || !strings.HasPrefix(h.net.applied[0].Source, "config-drive /dev/vda weft.yaml") || h.ev.count("default underlay") != 0 {
		t.Fatalf("underlay applied: %+v", h.net.applied)
	}
}

func TestBringupMetadataNetworkDataReplacesDefault(t *testing.T) {
	h := newHarness(t)
	nd, err := config.ParseNetworkData([]byte(driveNetworkData))
	if err != nil {
		t.Fatal(err)
	}
	md := bundle("metadata http://169.254.169.254/", goodYAML)
	md.NetworkData = nd
	h.meta.results = []fetchResult{{bundle: md}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"default (DHCP)", "metadata http://169.254.169.254/ network_data.json"}
	var got []string
	for _, u := range h.net.applied {
		got = append(got, u.Source)
	}
	if !slices.Equal(got, want) {
		t.Errorf("underlays applied %q, want %q", got, want)
	}
	// The network_data underlay is applied before the config is handed over.
	if i, j := h.ev.index("underlay apply metadata"), h.ev.index("apply config"); i < 0 || j < i {
		t.Errorf("events %q", h.ev.list())
	}
}

// A weft.yaml from the metadata service with an underlay section (the
// fleet's MTU) replaces the DHCP default before the config is handed over.
func TestBringupMetadataWeftUnderlayReplacesDefault(t *testing.T) {
	h := newHarness(t)
	yaml := "node:\n  hostname: n1\nunderlay:\n  links:\n    - match: {mac: \"52:54:00:00:00:01\"}\n      dhcp: true\n      mtu: 1400\n"
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", yaml)}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var got []string
	for _, u := range h.net.applied {
		got = append(got, u.Source)
	}
	want := []string{"default (DHCP)", "metadata http://169.254.169.254/ weft.yaml underlay"}
	if !slices.Equal(got, want) {
		t.Fatalf("underlays applied %q, want %q", got, want)
	}
	if mtu := h.net.applied[1].Links[0].MTU; mtu != 1400 {
		t.Errorf("mtu %d, want 1400", mtu)
	}
	if i, j := h.ev.index("underlay apply metadata"), h.ev.index("apply config"); i < 0 || j < i {
		t.Errorf("events %q", h.ev.list())
	}
}

func TestBringupDriveInvalidDoesNotFallThrough(t *testing.T) {
	h := newHarness(t)
	h.clock.cancelAfter = 2
	h.drive.results = []fetchResult{{bundle: bundle("config-drive /dev/vda", invalidYAML)}}
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", goodYAML)}}
	if err := h.run(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	// The drive has precedence: its invalid weft.yaml is the config, and it
	// is read again on each retry.
	if h.ev.count("fetch metadata") != 0 || h.ev.count("fetch config-drive") != 2 {
		t.Errorf("events %q", h.ev.list())
	}
	s, _ := h.rec.last(StepConfig)
	if s.Verdict != steps.Failed || !strings.HasPrefix(s.Detail, "config-drive /dev/vda: user_data: bgp.asn (line 2)") {
		t.Errorf("config: %s", s.Line())
	}
}

func TestBringupApplyFailureRetries(t *testing.T) {
	h := newHarness(t)
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", goodYAML)}}
	apply := h.b.Apply
	fails := 1
	h.b.Apply = func(ctx context.Context, a Applied) error {
		if fails > 0 {
			fails--
			return errors.New("writing /run/weft/weft.yaml: no space left on device")
		}
		return apply(ctx, a)
	}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(h.applied) != 1 || h.ev.count("fetch metadata") != 2 {
		t.Errorf("events %q", h.ev.list())
	}
	if !strings.Contains(h.rec.lines(), "applying it failed: writing /run/weft/weft.yaml") {
		t.Error("apply failure not reported")
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		source string
		err    error
		sent   error
		want   string
	}{
		{"metadata", errors.New("dial: refused"), nil, "metadata: dial: refused"},
		{"config-drive /dev/vda", fmt.Errorf("config-drive /dev/vda: user_data is #cloud-config, not weft.yaml: %w", config.ErrNotWeft), config.ErrNotWeft, "config-drive /dev/vda: user_data is #cloud-config, not weft.yaml"},
	} {
		if got := describe(tc.source, tc.err, tc.sent); got != tc.want {
			t.Errorf("describe(%q, %v) = %q, want %q", tc.source, tc.err, got, tc.want)
		}
	}
}

// A network_data.json that leaves no usable link falls back to DHCP on the
// NICs present, as the metadata-service path keeps its DHCP default; the
// status says why, and the hint fits the cause.
func TestBringupDeclaredUnderlayFallsBackToDHCP(t *testing.T) {
	for _, tc := range []struct {
		name, doc    string
		failDeclared bool
		why, notWhy  string
	}{
		{name: "nothing survives parsing",
			doc: `{"links":[{"id":"l0","type":"vlan","vlan_link":"l0","vlan_id":5},{"type":"phy"}]}`,
			why: "network_data.json: declares no link Weft can use (see step=network-data)", notWhy: "cabling"},
		{name: "no declared link usable", failDeclared: true,
			doc: `{"links":[{"id":"l0","type":"phy","ethernet_mac_address":"52:54:00:00:00:09"}]}`,
			why: "network_data.json: no usable link: eth0: no DHCP offer; check the NIC drivers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			nd, err := config.ParseNetworkData([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			drive := bundle("config-drive /dev/vda", goodYAML)
			drive.NetworkData = nd
			h.drive.results = []fetchResult{{bundle: drive}}
			if tc.failDeclared {
				h.net.failSource = "config-drive /dev/vda network_data.json"
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(h.net.applied) != 1 || h.net.applied[0].Source != "default (DHCP)" || h.ev.count("default underlay") != 1 {
				t.Fatalf("underlays applied %+v; events %q", h.net.applied, h.ev.list())
			}
			var said bool
			for _, s := range h.rec.all() {
				if s.Name == StepUnderlay && s.Verdict == steps.Failed && strings.Contains(s.Detail, tc.why) && strings.HasSuffix(s.Detail, "; falling back to DHCP on the NICs present") {
					said = true
				}
			}
			if !said {
				t.Error("the console does not say why it falls back")
			}
			s, _ := h.rec.last(StepUnderlay)
			if s.Verdict != steps.Warning || !strings.HasPrefix(s.Detail, "DHCP fallback: ") || !strings.Contains(s.Detail, tc.why) || s.Attrs["source"] != "default (DHCP)" {
				t.Errorf("status: %s", s.Line())
			}
			if tc.notWhy != "" && strings.Contains(s.Detail, tc.notWhy) {
				t.Errorf("hint blames %q: %s", tc.notWhy, s.Detail)
			}
			if r, _ := h.rec.last(StepReady); r.Verdict != steps.OK {
				t.Errorf("ready: %s", r.Line())
			}
		})
	}
}

// Without any NIC the fallback says so, and the declared underlay is tried
// again on the next pass.
func TestBringupFallbackWithoutNIC(t *testing.T) {
	h := newHarness(t)
	h.clock.cancelAfter = 2
	nd, err := config.ParseNetworkData([]byte(`{"links":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	drive := bundle("config-drive /dev/vda", goodYAML)
	drive.NetworkData = nd
	h.drive.results = []fetchResult{{bundle: drive}}
	h.b.DefaultUnderlay = func(net.HardwareAddr) (config.Underlay, error) {
		h.ev.add("default underlay")
		return config.Underlay{}, errors.New("no NIC found")
	}
	if err := h.run(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if n := h.ev.count("default underlay"); n < 2 {
		t.Errorf("fallback tried %d times, want one per pass", n)
	}
	s, _ := h.rec.last(StepUnderlay)
	if s.Verdict != steps.Failed || !strings.Contains(s.Detail, "declares no link Weft can use") || !strings.HasSuffix(s.Detail, "no DHCP fallback either: no NIC found") {
		t.Errorf("underlay: %s", s.Line())
	}
}
