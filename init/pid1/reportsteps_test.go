package pid1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/init/steps"
)

// The fleet view gets a link's every cause, and a node with 10,000 links
// still sends a report the controller accepts, naming what it left out.
func TestReportStepsCarriesCausesWithinBounds(t *testing.T) {
	rec := steps.New(nil, "", nil)
	rec.Report(StepConfigDrive, steps.OK, "")
	rec.Report(StepNetworkData, steps.Failed, `member "b1" is a bond, not a NIC`, "link", "b1")
	rec.Report(StepNetworkData, steps.Failed, "no usable member; link skipped", "link", "b1")
	small := reportSteps(rec.Steps())
	if len(small) != 2 || !slices.Equal(small[1].Causes, []string{`member "b1" is a bond, not a NIC`, "no usable member; link skipped"}) {
		t.Fatalf("small report: %+v", small)
	}

	const links = 10_000
	for i := range links {
		v := steps.Failed
		if i%2 == 0 {
			v = steps.OK
		}
		rec.Report("link", v, fmt.Sprintf("no NIC with MAC 52:54:00:%02x:%02x:00 after 30s", i/256, i%256), "link", fmt.Sprintf("l%d", i), "kind", "phy")
	}
	rec.Report(StepReady, steps.OK, "", "config", "config-drive /dev/vda")
	got := reportSteps(rec.Steps())
	doc, err := json.Marshal(&fleetapi.Report{Time: time.Now(), Steps: got})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries make a report of %d steps, %d bytes", len(rec.Steps()), len(got), len(doc))
	r, err := fleetapi.DecodeReport(doc)
	if err != nil {
		t.Fatalf("the controller refuses the report: %v", err)
	}
	names := map[string]int{}
	var summary *fleetapi.Step
	for i, s := range r.Steps {
		names[s.Name]++
		if s.Name == "link" && s.Attrs["omitted"] != "" {
			summary = &r.Steps[i]
		}
		if s.Name == "link" && s.Attrs["link"] != "" && s.Verdict != fleetapi.VerdictFailed {
			t.Errorf("an ok link was sent while failed ones were left out: %+v", s)
		}
	}
	for _, n := range []string{StepConfigDrive, StepNetworkData, StepReady} {
		if names[n] != 1 {
			t.Errorf("step %s sent %d times, want once", n, names[n])
		}
	}
	if summary == nil || summary.Verdict != fleetapi.VerdictFailed || !strings.Contains(summary.Detail, "steps link") {
		t.Fatalf("no summary of the links left out: %+v", summary)
	}
	sent := names["link"] - 1
	if fmt.Sprint(links-sent) != summary.Attrs["omitted"] {
		t.Errorf("summary says %s omitted, %d links were sent of %d", summary.Attrs["omitted"], sent, links)
	}
}

func TestWriteStepsFilters(t *testing.T) {
	rec := steps.New(nil, "", nil)
	rec.Report(StepConfigDrive, steps.Failed, "network_data.json: truncated", "file", "network_data.json")
	rec.Report("link", steps.Failed, "A", "link", "eth0")
	rec.Report("link", steps.Failed, "B", "link", "eth0")
	rec.Report(StepReady, steps.Waiting, "no usable underlay link")
	var b bytes.Buffer
	writeSteps(&b, rec.Steps(), []string{"link", StepReady})
	want := "link eth0      failed   A; B\r\nready          waiting  no usable underlay link\r\n(2 entries)\r\n"
	if b.String() != want {
		t.Errorf("steps link ready:\n%q\nwant\n%q", b.String(), want)
	}
}
