package main

// A/B runs (-variant, repeated): the same binary under several environments (a variant is a name
// and the environment variables it adds to every wrapper), compared in one run. Each round runs,
// for every variant in turn (the order rotating from round to round), one start reaction and
// one stop reaction through the API, then the instrument runs once; after the rounds, each
// variant's idle wrappers' memory. Printed only: the sections of docs/performance.md are left
// alone.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// variant is one side of an A/B run.
type variant struct {
	name string
	bin  string // "" for -bin
	env  []string
}

type variantFlag []variant

func (v *variantFlag) String() string { return fmt.Sprint(*v) }

// Set takes NAME[@BINARY][:KEY=VALUE,KEY=VALUE].
func (v *variantFlag) Set(s string) error {
	name, env, _ := strings.Cut(s, ":")
	var vr variant
	name, vr.bin, _ = strings.Cut(name, "@")
	if name == "" {
		return fmt.Errorf("variant %q: no name", s)
	}
	vr.name = name
	if env != "" {
		for kv := range strings.SplitSeq(env, ",") {
			if !strings.Contains(kv, "=") {
				return fmt.Errorf("variant %q: %q is not KEY=VALUE", s, kv)
			}
			vr.env = append(vr.env, kv)
		}
	}
	*v = append(*v, vr)
	return nil
}

type abResult struct {
	start []startSample
	stop  []sample
}

// abRun measures the variants n rounds each and prints the comparison.
func (b *bench) abRun(ctx context.Context, bin string, vs []variant, n int, o idleOptions) error {
	// Each variant's binary, installed as the start and the API setups have it.
	startBin, apiBin := make([]string, len(vs)), make([]string, len(vs))
	for j, v := range vs {
		vb := bin
		if v.bin != "" {
			var err error
			if vb, err = filepath.Abs(v.bin); err != nil {
				return err
			}
		}
		var err error
		if startBin[j], err = install(vb, filepath.Join(b.tmp, fmt.Sprintf("emptydir-start-%d", j))); err != nil {
			return err
		}
		if apiBin[j], err = install(vb, filepath.Join(b.tmp, fmt.Sprintf("emptydir-api-%d", j))); err != nil {
			return err
		}
		vs[j].bin = vb
	}
	res := make([]abResult, len(vs))
	var spawn []time.Duration
	var floors []sample
	began := time.Now()
	for i := range n {
		for k := range vs {
			j := (i + k) % len(vs)
			b.extraEnv = vs[j].env
			s, err := b.startRun(ctx, fmt.Sprintf("ab-start-%d-%d", i, j), startBin[j])
			if err != nil {
				return fmt.Errorf("%s: start reaction %d: %w", vs[j].name, i, err)
			}
			res[j].start = append(res[j].start, s)
			b.apiBin = apiBin[j]
			a, err := b.apiRun(ctx, i*len(vs)+j)
			if err != nil {
				return fmt.Errorf("%s: stop reaction %d: %w", vs[j].name, i, err)
			}
			res[j].stop = append(res[j].stop, a)
		}
		b.extraEnv = nil
		d, err := b.spawnFloorRun(ctx)
		if err != nil {
			return err
		}
		spawn = append(spawn, d)
		f, err := b.floorRun(ctx)
		if err != nil {
			return err
		}
		floors = append(floors, f)
	}
	fmt.Fprintf(os.Stderr, "benchreaction: %d A/B rounds of %d variants in %s\n", n, len(vs), time.Since(began).Round(time.Millisecond))
	sp50 := pct(spawn, 0.5)
	kill := make([]time.Duration, len(floors))
	for i, f := range floors {
		kill[i] = f.signaled
	}
	k50 := pct(kill, 0.5)
	fmt.Printf("A/B, %d interleaved rounds; instruments: a plain parent starts the child p50 %s, a plain parent's kill(2) reaches the child p50 %s\n\n", n, ms(sp50), ms(k50))
	fmt.Printf("| variant | start reaction p50 / p90 | its floor p50 | start: own share | page faults from the write to the exit (wrapper and child), median | stop via API p50 / p90 | its floor p50 | stop: own share |\n|---|---|---|---|---|---|---|---|\n")
	for j, v := range vs {
		r := res[j]
		st := startDurations(r.start, func(s startSample) time.Duration { return s.reaction })
		sf := startDurations(r.start, func(s startSample) time.Duration { return s.floor })
		ap := make([]time.Duration, len(r.stop))
		af := make([]time.Duration, len(r.stop))
		for i, s := range r.stop {
			ap[i], af[i] = s.reaction, s.floor
		}
		fl := startDurations(r.start, func(s startSample) time.Duration { return time.Duration(s.faults) })
		fmt.Printf("| %s | %s / %s | %s | %s | %d | %s / %s | %s | %s |\n", v.name,
			ms(pct(st, 0.5)), ms(pct(st, 0.9)), ms(pct(sf, 0.5)), ms(pct(st, 0.5)-pct(sf, 0.5)-sp50), int64(pct(fl, 0.5)),
			ms(pct(ap, 0.5)), ms(pct(ap, 0.9)), ms(pct(af, 0.5)), ms(pct(ap, 0.5)-pct(af, 0.5)-k50))
	}
	if o.wrappers < 2 {
		return nil
	}
	fmt.Printf("\n| variant, %s after sync | working set, waiting (median) | VmRSS waiting / running (median) | RssAnon / RssFile waiting |\n|---|---|---|---|\n", o.rssAfter)
	for _, v := range vs {
		b.extraEnv = v.env
		m, err := b.idleRun(ctx, v.bin, o)
		if err != nil {
			return fmt.Errorf("%s: idle wrappers: %w", v.name, err)
		}
		medKB := func(ms []memSample, f func(rss) int64) string {
			v := make([]time.Duration, len(ms)) // pct on kB counts
			for i, m := range ms {
				v[i] = time.Duration(f(m.rss))
			}
			return fmt.Sprintf("%.1f", float64(pct(v, 0.5))/1024)
		}
		wsv := make([]time.Duration, len(m.wait))
		for i, w := range m.wait {
			if w.cgroups {
				wsv[i] = time.Duration(w.ctr.workingSet())
			} else {
				wsv[i] = time.Duration((w.rss.anon + w.rss.pte) * 1024)
			}
		}
		fmt.Printf("| %s | %.1f MiB | %s / %s MiB | %s / %s MiB |\n", v.name, float64(pct(wsv, 0.5))/(1<<20),
			medKB(m.wait, func(m rss) int64 { return m.vm }), medKB(m.run, func(m rss) int64 { return m.vm }),
			medKB(m.wait, func(m rss) int64 { return m.anon }), medKB(m.wait, func(m rss) int64 { return m.file }))
	}
	b.extraEnv = nil
	return nil
}
