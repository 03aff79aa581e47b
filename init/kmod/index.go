package kmod

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// Index file names in a module directory (/lib/modules/<release>), as kmod
// names them.
const (
	DepFile     = "modules.dep"
	AliasFile   = "modules.alias"
	BuiltinFile = "modules.builtin"
)

// Index is the module index of one kernel: where each module lives, what
// it needs loaded first, which device aliases it serves, and which modules
// are built into the kernel. It is immutable once built or loaded.
type Index struct {
	paths   map[string]string   // module name -> relative path
	deps    map[string][]string // relative path -> dependency paths in load order
	order   []string            // relative paths, sorted
	aliases []alias
	builtin map[string]string // module name -> path as in modules.builtin

	unresolved []string // "mod: dep" for depends= naming an absent module
}

type alias struct {
	pattern string // normalised
	prefix  string // literal prefix of pattern
	module  string
}

// BuildIndex builds the index of the given modules, keyed by path relative
// to the module directory ("kernel/drivers/net/virtio_net.ko"). Each
// module's dependencies are resolved to the transitive closure, ordered so
// that every module comes after everything it depends on. A depends= entry
// naming a module not in mods is left out and reported by Unresolved.
func BuildIndex(mods map[string]Modinfo) *Index {
	ix := &Index{
		paths:   make(map[string]string, len(mods)),
		deps:    make(map[string][]string, len(mods)),
		builtin: map[string]string{},
	}
	for rel := range mods {
		ix.order = append(ix.order, rel)
	}
	slices.Sort(ix.order)
	for _, rel := range ix.order {
		name := mods[rel].Name
		if name == "" {
			name = NameFromPath(rel)
		}
		// Two files claiming one name: the first path in sorted order wins,
		// so the result does not depend on map iteration.
		if _, dup := ix.paths[name]; !dup {
			ix.paths[name] = rel
		}
	}
	missing := map[string]bool{}
	nameOf := func(rel string) string {
		if n := mods[rel].Name; n != "" {
			return n
		}
		return NameFromPath(rel)
	}
	for _, rel := range ix.order {
		var closure []string
		seen := map[string]bool{rel: true}
		var visit func(r string)
		visit = func(r string) {
			for _, d := range mods[r].Depends {
				dp, ok := ix.paths[d]
				if !ok {
					missing[nameOf(r)+": "+d] = true
					continue
				}
				if seen[dp] {
					continue
				}
				seen[dp] = true
				visit(dp)
				closure = append(closure, dp)
			}
		}
		visit(rel)
		ix.deps[rel] = closure
	}
	for _, rel := range ix.order {
		for _, a := range mods[rel].Aliases {
			ix.addAlias(a, nameOf(rel))
		}
	}
	for m := range missing {
		ix.unresolved = append(ix.unresolved, m)
	}
	slices.Sort(ix.unresolved)
	return ix
}

func (ix *Index) addAlias(pattern, module string) {
	p := normalizeAlias(pattern)
	ix.aliases = append(ix.aliases, alias{pattern: p, prefix: literalPrefix(p), module: module})
}

// AddBuiltin records modules compiled into the kernel, by path as in
// modules.builtin ("kernel/fs/nls/nls_base.ko"). Loading a built-in
// module is a no-op.
func (ix *Index) AddBuiltin(paths ...string) {
	for _, p := range paths {
		ix.builtin[NameFromPath(p)] = p
	}
}

// Unresolved lists dependencies that BuildIndex could not find among the
// modules it was given, as "module: dependency", sorted. An image whose
// index has any is missing files.
func (ix *Index) Unresolved() []string { return slices.Clone(ix.unresolved) }

// Modules returns the names of all modules in the index, sorted.
func (ix *Index) Modules() []string {
	names := make([]string, 0, len(ix.paths))
	for n := range ix.paths {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Path returns the path of module name relative to the module directory.
func (ix *Index) Path(name string) (string, bool) {
	p, ok := ix.paths[NormalizeName(name)]
	return p, ok
}

// Builtin reports whether module name is compiled into the kernel.
func (ix *Index) Builtin(name string) bool {
	_, ok := ix.builtin[NormalizeName(name)]
	return ok
}

// Deps returns the relative paths of the modules that must be loaded
// before module name, in load order (the last one is loaded just before
// the module itself).
func (ix *Index) Deps(name string) ([]string, error) {
	rel, ok := ix.Path(name)
	if !ok {
		return nil, fmt.Errorf("module %q is not in %s", name, DepFile)
	}
	return slices.Clone(ix.deps[rel]), nil
}

// Match returns the names of the modules whose aliases match modalias (a
// device's /sys/.../modalias, or an alias such as "fs-vfat"), in the order
// of the alias file, each once. Matching is kmod's: normalised strings,
// fnmatch-style globs.
func (ix *Index) Match(modalias string) []string {
	s := normalizeAlias(strings.TrimSpace(modalias))
	if s == "" {
		return nil
	}
	var out []string
	for _, a := range ix.aliases {
		if !strings.HasPrefix(s, a.prefix) || slices.Contains(out, a.module) {
			continue
		}
		if globMatch(a.pattern, s) {
			out = append(out, a.module)
		}
	}
	return out
}

// WriteFiles writes modules.dep and modules.alias (and modules.builtin
// when built-in modules are known) into dir in kmod's text formats. Lines
// are sorted by path so the same modules always give the same bytes.
func (ix *Index) WriteFiles(dir string) error {
	var dep bytes.Buffer
	for _, rel := range ix.order {
		dep.WriteString(rel)
		dep.WriteByte(':')
		// depmod lists dependents before their dependencies; modprobe loads
		// from the end of the list backwards.
		d := ix.deps[rel]
		for i := len(d) - 1; i >= 0; i-- {
			dep.WriteByte(' ')
			dep.WriteString(d[i])
		}
		dep.WriteByte('\n')
	}
	var al bytes.Buffer
	al.WriteString("# Aliases extracted from modules themselves.\n")
	for _, a := range ix.aliases {
		fmt.Fprintf(&al, "alias %s %s\n", a.pattern, a.module)
	}
	files := []struct {
		name string
		data []byte
	}{{DepFile, dep.Bytes()}, {AliasFile, al.Bytes()}}
	if len(ix.builtin) > 0 {
		var b bytes.Buffer
		for _, p := range slices.Sorted(maps.Values(ix.builtin)) {
			b.WriteString(p)
			b.WriteByte('\n')
		}
		files = append(files, struct {
			name string
			data []byte
		}{BuiltinFile, b.Bytes()})
	}
	for _, f := range files {
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// LoadIndex reads modules.dep and modules.alias (required) and
// modules.builtin (optional) from dir.
func LoadIndex(dir string) (*Index, error) {
	ix := &Index{paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]string{}}
	f, err := os.Open(filepath.Join(dir, DepFile))
	if err != nil {
		return nil, fmt.Errorf("module index: %w (the image should carry it; rebuild with weft image build)", err)
	}
	err = ix.readDep(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, DepFile), err)
	}
	f, err = os.Open(filepath.Join(dir, AliasFile))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	err = ix.readAlias(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, AliasFile), err)
	}
	f, err = os.Open(filepath.Join(dir, BuiltinFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("module index: %w", err)
	default:
		err = ix.readBuiltin(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, BuiltinFile), err)
		}
	}
	return ix, nil
}

// ParseDep parses modules.dep text: "path: dep dep ..." per line, the
// dependencies listed as depmod writes them (dependents first).
func ParseDep(r io.Reader) (*Index, error) {
	ix := &Index{paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]string{}}
	return ix, ix.readDep(r)
}

// ParseAlias parses modules.alias text: "alias PATTERN MODULE" per line.
func ParseAlias(r io.Reader) (*Index, error) {
	ix := &Index{paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]string{}}
	return ix, ix.readAlias(r)
}

func (ix *Index) readDep(r io.Reader) error {
	return eachLine(r, func(n int, line string) error {
		rel, rest, ok := strings.Cut(line, ":")
		rel = strings.TrimSpace(rel)
		if !ok || rel == "" || strings.ContainsAny(rel, " \t") {
			return fmt.Errorf("line %d: want \"path: dependencies\", got %q", n, line)
		}
		if _, dup := ix.deps[rel]; dup {
			return fmt.Errorf("line %d: %s listed twice", n, rel)
		}
		// Fields also copes with the trailing space some writers leave.
		d := strings.Fields(rest)
		slices.Reverse(d)
		ix.deps[rel] = d
		ix.order = append(ix.order, rel)
		return nil
	}, func() {
		// As in BuildIndex: of two files with one name, the first path in
		// sorted order wins, whatever order the file lists them in.
		slices.Sort(ix.order)
		for _, rel := range ix.order {
			if name := NameFromPath(rel); ix.paths[name] == "" {
				ix.paths[name] = rel
			}
		}
	})
}

func (ix *Index) readAlias(r io.Reader) error {
	return eachLine(r, func(n int, line string) error {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("line %d: want \"alias PATTERN MODULE\", got %q", n, line)
		}
		ix.addAlias(f[1], NormalizeName(f[2]))
		return nil
	}, nil)
}

func (ix *Index) readBuiltin(r io.Reader) error {
	return eachLine(r, func(n int, line string) error {
		if strings.ContainsAny(line, " \t") {
			return fmt.Errorf("line %d: want one path, got %q", n, line)
		}
		ix.builtin[NameFromPath(line)] = line
		return nil
	}, nil)
}

// eachLine calls fn for every non-blank, non-comment line (1-based n).
func eachLine(r io.Reader, fn func(n int, line string) error, done func()) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	if done != nil {
		done()
	}
	return nil
}
