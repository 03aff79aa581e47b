package pid1

import (
	"errors"
	"fmt"
	"strings"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
)

// LastGood keeps the last validated configuration; *source.Store implements it.
type LastGood interface {
	Save(b *config.Bundle, c *config.Config) error
	// Load returns the saved set, an error wrapping config.ErrNotFound
	// when there is none, or an error naming the file when it is damaged
	// (then nothing of it is returned).
	Load() (*config.Bundle, *config.Config, error)
}

// lastGoodFile is the subject (file attr) of the last-good verdicts about
// the stored file, apart from the one that says where it is kept.
const lastGoodFile = "last-good.json"

// saveLastGood stores a valid config as the last good one. A failed save
// is a verdict, not only a log line: the operator must learn that a reboot
// without a config source would not find this config.
func (b *Bringup) saveLastGood(bundle *config.Bundle, cfg *config.Config, source string) {
	if b.Store == nil {
		return
	}
	if err := b.Store.Save(bundle, cfg); err != nil {
		b.report(StepLastGood, steps.Failed, fmt.Sprintf("saving the config from %s: %v; a reboot without a config source finds the previous last good config, if any", source, err),
			"file", lastGoodFile)
		return
	}
	b.Log.Info("last good config saved", "source", source)
	// A success is a verdict only where it clears an earlier failure.
	if prev := b.last[steps.Key(StepLastGood, "file", lastGoodFile)]; strings.HasPrefix(prev, string(steps.Failed)+"\x00") {
		b.report(StepLastGood, steps.OK, "saved again", "file", lastGoodFile, "saved", source)
	}
}

// lastGood loads the saved config, or nil. A stored file that is damaged
// is refused whole and reported, naming it.
func (b *Bringup) lastGood() *Applied {
	if b.Store == nil {
		return nil
	}
	bundle, cfg, err := b.Store.Load()
	if err != nil || bundle == nil || cfg == nil {
		if err != nil && !errors.Is(err, config.ErrNotFound) {
			b.report(StepLastGood, steps.Failed, fmt.Sprintf("%v; not used: the node waits for a config source", err), "file", lastGoodFile)
		}
		return nil
	}
	src := bundle.Source
	if src == "" {
		src = "an earlier source"
	}
	return &Applied{Bundle: bundle, Config: cfg, Source: src + " (last good)", LastGood: true}
}
