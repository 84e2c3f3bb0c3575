package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/koordinator-dev/koordinator/internal/manifest"
)

// input is one file read for -f, parsed.
type input struct {
	name string // as given ("-" for stdin), or the path found in a directory
	data []byte
	docs []*manifest.Document
	mode os.FileMode
}

// fileFlags are -f and -R, as kubectl has them.
type fileFlags struct {
	files     []string
	recursive bool
}

func (f *fileFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringArrayVarP(&f.files, "filename", "f", nil, what+": a file, a directory (its .yaml, .yml and .json files) or - for stdin; repeatable")
	cmd.Flags().BoolVarP(&f.recursive, "recursive", "R", false, "read the directories given with -f recursively")
	_ = cmd.MarkFlagRequired("filename")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
}

// read reads and parses every input; the first problem is an error, and nothing is returned.
func (f *fileFlags) read(stdin io.Reader) ([]*input, error) {
	var names []string
	stdinSeen := false
	for _, name := range f.files {
		if name == "-" {
			if stdinSeen {
				return nil, errors.New("-f - is given twice; stdin can be read once")
			}
			stdinSeen = true
			names = append(names, name)
			continue
		}
		st, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", name, err)
		}
		if !st.IsDir() {
			names = append(names, name)
			continue
		}
		found, err := manifestsIn(name, f.recursive)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("-f %s: the directory holds no .yaml, .yml or .json file", name)
		}
		names = append(names, found...)
	}
	var ins []*input
	for _, name := range names {
		in := &input{name: name, mode: 0o644}
		var err error
		if name == "-" {
			in.data, err = io.ReadAll(stdin)
		} else {
			in.data, err = os.ReadFile(name)
			if st, serr := os.Stat(name); serr == nil {
				in.mode = st.Mode().Perm()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		if in.docs, err = manifest.Parse(in.data); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ins = append(ins, in)
	}
	return ins, nil
}

func manifestsIn(dir string, recursive bool) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		if slices.Contains([]string{".yaml", ".yml", ".json"}, strings.ToLower(filepath.Ext(p))) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", dir, err)
	}
	return found, nil
}

// writeInPlace replaces the file atomically: a temporary file in the same directory, renamed
// over it, with the file's permissions.
func writeInPlace(name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
