package pid1

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/init/steps"
)

// What of the boot steps a phone-home report carries. The controller
// refuses a report of more than 4096 steps or fleetapi.MaxReportBytes, and
// a network_data.json of 10,000 links makes 10,000 entries: past these
// bounds the report keeps every step without a subject, then the entries
// with a problem, then the rest, and says per step how many it left out.
const (
	reportMaxSteps = 1000
	reportMaxBytes = fleetapi.MaxReportBytes / 2
)

// reportSteps writes the boot steps as a report carries them.
func reportSteps(ss []steps.Step) []fleetapi.Step {
	all := make([]fleetapi.Step, len(ss))
	size := make([]int, len(ss))
	total := 0
	for i, s := range ss {
		all[i] = fleetapi.Step{Name: s.Name, Verdict: fleetapi.Verdict(s.Verdict), Detail: s.Detail, Causes: s.Causes, Attrs: s.Attrs, Time: s.Time}
		size[i] = stepSize(all[i])
		total += size[i]
	}
	if len(all) <= reportMaxSteps && total <= reportMaxBytes {
		return all
	}
	keep := make([]bool, len(all))
	n, bytes := 0, 0
	take := func(want func(fleetapi.Step) bool) {
		for i, s := range all {
			if !keep[i] && want(s) && n < reportMaxSteps-summaryRoom && bytes+size[i] <= reportMaxBytes {
				keep[i] = true
				n++
				bytes += size[i]
			}
		}
	}
	subject := func(s fleetapi.Step) bool { return s.Attrs["link"] != "" || s.Attrs["file"] != "" }
	take(func(s fleetapi.Step) bool { return !subject(s) })
	take(func(s fleetapi.Step) bool {
		return s.Verdict == fleetapi.VerdictFailed || s.Verdict == fleetapi.VerdictWaiting
	})
	take(func(fleetapi.Step) bool { return true })

	var out []fleetapi.Step
	left := map[string]*omitted{}
	var order []string
	for i, s := range all {
		if keep[i] {
			out = append(out, s)
			continue
		}
		o := left[s.Name]
		if o == nil {
			o = &omitted{by: map[fleetapi.Verdict]int{}}
			left[s.Name] = o
			order = append(order, s.Name)
		}
		o.add(s)
	}
	for _, name := range order {
		out = append(out, left[name].step(name))
	}
	return out
}

// summaryRoom is the room kept for the summaries of what was left out.
const summaryRoom = 16

// stepSize estimates a step's bytes in the report's JSON.
func stepSize(s fleetapi.Step) int {
	n := 100 + len(s.Name) + 2*len(s.Detail) // the time, the keys, escapes
	for _, c := range s.Causes {
		n += 2*len(c) + 3
	}
	for k, v := range s.Attrs {
		n += len(k) + len(v) + 6
	}
	return n
}

// omitted counts the entries of one step a report leaves out.
type omitted struct {
	n     int
	by    map[fleetapi.Verdict]int
	worst fleetapi.Verdict
	last  fleetapi.Step
}

var verdictRank = map[fleetapi.Verdict]int{fleetapi.VerdictOK: 1, fleetapi.VerdictSkipped: 2, fleetapi.VerdictWaiting: 3, fleetapi.VerdictFailed: 4}

func (o *omitted) add(s fleetapi.Step) {
	o.n++
	o.by[s.Verdict]++
	if verdictRank[s.Verdict] > verdictRank[o.worst] {
		o.worst = s.Verdict
	}
	if s.Time.After(o.last.Time) {
		o.last = s
	}
}

// step is the summary that stands for the entries left out.
func (o *omitted) step(name string) fleetapi.Step {
	var counts []string
	for _, v := range slices.Sorted(maps.Keys(o.by)) {
		counts = append(counts, fmt.Sprintf("%d %s", o.by[v], v))
	}
	return fleetapi.Step{
		Name:    name,
		Verdict: o.worst,
		Detail: fmt.Sprintf("%d more %s entries are not in this report (%s); the node's operator console lists them all (steps %s)",
			o.n, name, strings.Join(counts, ", "), name),
		Attrs: map[string]string{"omitted": fmt.Sprint(o.n)},
		Time:  o.last.Time,
	}
}
