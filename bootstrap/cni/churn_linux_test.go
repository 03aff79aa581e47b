package cni_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"
)

// churnSubnet is the churn network's subnet: 61 pod addresses (a /26
// less its own address, the gateway and the broadcast). 200 pods pass
// through it, so every address is handed out several times over, and a
// leaked one shows as a pod that cannot get an address at the end.
var churnSubnet = netip.MustParsePrefix("10.0.40.0/26")

const churnFree = 61

// churn drives pods the way kubelet does: ADD; when it fails, DEL and
// try again later. It records who holds which address and fails the test
// at once when an address is handed to a second live pod.
type churn struct {
	r      *rig
	mu     sync.Mutex
	holder map[netip.Addr]string // address -> container of a live pod
	live   map[string]*pod       // container -> pod
	addrOf map[string]netip.Addr // container -> its address
	errs   []string
	tries  int // ADDs that failed and were retried
}

func (c *churn) add(p *pod) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res *types100.Result
	var tried []string
	for {
		t0 := time.Now()
		raw, err := c.r.cni.AddNetworkList(ctx, c.r.list, p.rt)
		if err == nil {
			if res, err = types100.NewResultFromResult(raw); err != nil {
				c.fail("ADD %s: result: %v", p.rt.ContainerID, err)
				return
			}
			break
		}
		c.mu.Lock()
		c.tries++
		c.mu.Unlock()
		tried = append(tried, fmt.Sprintf("%v after %v", err, time.Since(t0).Round(time.Millisecond)))
		// As kubelet: a failed ADD is cleaned up with DEL before the next.
		c.r.cni.DelNetworkList(ctx, c.r.list, p.rt)
		if ctx.Err() != nil {
			c.fail("ADD %s: no success in 2 minutes; tries: %s", p.rt.ContainerID, strings.Join(tried, "; "))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	a := addrOf(res, false)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !churnSubnet.Contains(a) {
		c.errs = append(c.errs, fmt.Sprintf("%s got %v, outside %v", p.rt.ContainerID, a, churnSubnet))
		return
	}
	if who, ok := c.holder[a]; ok {
		c.errs = append(c.errs, fmt.Sprintf("%s got %v, which live pod %s holds", p.rt.ContainerID, a, who))
		return
	}
	c.holder[a] = p.rt.ContainerID
	c.live[p.rt.ContainerID] = p
	c.addrOf[p.rt.ContainerID] = a
}

func (c *churn) del(p *pod) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.r.cni.DelNetworkList(ctx, c.r.list, p.rt); err != nil {
		c.fail("DEL %s: %v", p.rt.ContainerID, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.holder, c.addrOf[p.rt.ContainerID])
	delete(c.live, p.rt.ContainerID)
	delete(c.addrOf, p.rt.ContainerID)
}

func (c *churn) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

// start runs f on the pods in the background, four at a time (a
// kubelet's parallel pod starts); wait for them with check.
func (c *churn) start(pods []*pod, f func(*pod)) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sem := make(chan struct{}, 4)
		var each sync.WaitGroup
		for _, p := range pods {
			each.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; each.Done() }()
				f(p)
			}()
		}
		each.Wait()
	}()
	return &wg
}

// each runs f on the pods as start does, and waits.
func (c *churn) each(t *testing.T, pods []*pod, f func(*pod)) {
	t.Helper()
	c.wait(t, c.start(pods, f))
}

// wait waits for a start and fails the test with what went wrong.
func (c *churn) wait(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) > 0 {
		c.r.h.Agent.Cmd.Process.Signal(unix.SIGQUIT) // its goroutines, into its output
		time.Sleep(time.Second)
		t.Fatalf("%d failures:\n%s\nagent:\n%s", len(c.errs), strings.Join(c.errs, "\n"), c.r.h.Agent.Output())
	}
}

// agree checks that the vRouter's ports in the churn subnet are the live
// pods, each with the address its ADD returned, and that the agent's
// attachments say the same. A deleted pod's port may stay a while: a
// restarted agent removes ports only once BGP has synced (its sync
// timeout is 30 s here, with no reflector), and keeps their addresses out
// of use meanwhile; so every live pod must be there at once, and the
// extra ports must go within a minute.
func (c *churn) agree(t *testing.T, when string) {
	t.Helper()
	c.mu.Lock()
	want := map[string]bool{}
	for cid, a := range c.addrOf {
		want["cni:"+cid+":eth0="+a.String()] = true
	}
	c.mu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		objs, err := c.r.h.Client.DumpAll(ctx, "ports")
		cancel()
		if err != nil {
			t.Fatalf("%s: vRouter ports: %v", when, err)
		}
		var extra []string
		found := 0
		for _, o := range objs {
			for _, s := range o.GetPort().GetAddresses() {
				p, err := netip.ParsePrefix(s)
				if err != nil || !churnSubnet.Contains(p.Addr()) {
					continue
				}
				if k := o.GetPort().GetName() + "=" + p.Addr().String(); want[k] {
					found++
				} else {
					extra = append(extra, k)
				}
			}
		}
		if found != len(want) {
			t.Fatalf("%s: %d of the %d live pods have their port and address in the vRouter; ports: %v", when, found, len(want), objs)
		}
		atts, err := c.r.h.AgentAPI.Attachments()
		if err != nil {
			t.Fatalf("%s: agent attachments: %v", when, err)
		}
		if len(extra) == 0 && len(atts) == len(want) {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(extra)
			t.Fatalf("%s: ports of deleted pods still in the vRouter after a minute: %v; %d attachments, want %d", when, extra, len(atts), len(want))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestCNIChurn: 200 pods created and deleted in waves through the
// plugin, four at a time, with the agent killed (-9) in the middle of two
// waves, once restarted with its state file and once as on a diskless
// node. No address is given to two live pods, the vRouter's ports are
// the live pods after every wave, and none leaks: when all are deleted,
// the subnet's 61 addresses all go out again and the 62nd pod is refused.
func TestCNIChurn(t *testing.T) {
	r := newRig(t, "wchn")
	r.h.StartVRouter(t)
	r.startAgent(t, true)
	c := &churn{r: r, holder: map[netip.Addr]string{}, live: map[string]*pod{}, addrOf: map[string]netip.Addr{}}
	newPods := func(wave, n int) []*pod {
		out := make([]*pod, n)
		for i := range out {
			out[i] = r.pod(t, fmt.Sprintf("w%dp%d", wave, i), [2]string{"weft.network", "churn"})
		}
		return out
	}
	// Five waves of 40: each keeps 5 of its pods and deletes the rest, so
	// 60 pods are live at the peak, one short of the subnet's 61.
	var kept []*pod
	start := time.Now()
	for wave := range 5 {
		pods := newPods(wave, 40)
		adding := c.start(pods, c.add)
		if wave == 1 || wave == 3 {
			time.Sleep(time.Second)
			r.h.Agent.Kill(unix.SIGKILL)
			r.startAgent(t, wave == 3) // wave 1: as a diskless node; wave 3: with the state file
		}
		c.wait(t, adding)
		c.agree(t, fmt.Sprintf("wave %d created", wave))
		c.each(t, pods[5:], c.del)
		kept = append(kept, pods[:5]...)
		c.agree(t, fmt.Sprintf("wave %d deleted", wave))
	}
	c.each(t, kept, c.del)
	c.agree(t, "all deleted")
	t.Logf("200 pods in 5 waves, 2 agent kills: %v, %d ADDs retried", time.Since(start).Round(time.Millisecond), c.tries)

	// Nothing leaked: the whole subnet goes out again, then no more.
	full := newPods(9, churnFree)
	c.each(t, full, c.add)
	c.agree(t, "subnet filled")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := r.cni.AddNetworkList(ctx, r.list, r.pod(t, "over", [2]string{"weft.network", "churn"}).rt)
	if e := cniErr(t, "ADD beyond the subnet", err); !strings.Contains(e.Msg+e.Details, "no free address") {
		t.Fatalf("ADD beyond the subnet: %+v, want no free address", e)
	}
}

// BenchmarkCNIAdd prints CNI ADD latency through libcni, the installed
// plugin binary, the agent and the vRouter (p50/p99), and DEL's.
func BenchmarkCNIAdd(b *testing.B) {
	r := newRig(b, "wcnb")
	r.h.StartVRouter(b)
	r.startAgent(b, true)
	ctx := context.Background()
	var adds, dels []time.Duration
	n := max(b.N, 50)
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = r.pod(b, fmt.Sprintf("b%d", i))
	}
	b.ResetTimer()
	for _, p := range pods {
		t0 := time.Now()
		if _, err := r.cni.AddNetworkList(ctx, r.list, p.rt); err != nil {
			b.Fatalf("ADD: %v", err)
		}
		adds = append(adds, time.Since(t0))
	}
	for _, p := range pods {
		t0 := time.Now()
		if err := r.cni.DelNetworkList(ctx, r.list, p.rt); err != nil {
			b.Fatalf("DEL: %v", err)
		}
		dels = append(dels, time.Since(t0))
	}
	b.StopTimer()
	report := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, name+"-p99-ms")
	}
	report("add", adds)
	report("del", dels)
	b.ReportMetric(0, "ns/op")
}
