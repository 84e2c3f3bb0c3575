package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// equal compares two nodes made by toNode: same shape, same keys in any order, same scalars
// with the same resolved tags.
func equal(a, b *yaml.Node) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case yaml.ScalarNode:
		return a.Value == b.Value && a.ShortTag() == b.ShortTag()
	case yaml.SequenceNode:
		if len(a.Content) != len(b.Content) {
			return false
		}
		for i := range a.Content {
			if !equal(a.Content[i], b.Content[i]) {
				return false
			}
		}
		return true
	case yaml.MappingNode:
		if len(a.Content) != len(b.Content) {
			return false
		}
		for i := 0; i+1 < len(a.Content); i += 2 {
			if !equal(a.Content[i+1], value(b, a.Content[i].Value)) {
				return false
			}
		}
		return true
	}
	return false
}

// sync makes n (the document's node, whose typed value was old) hold new, touching only what
// differs: a mapping keeps its other keys, a list that only grew keeps its items.
func sync(n, old, new *yaml.Node) error {
	if equal(old, new) {
		return nil
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return fmt.Errorf("cannot change a YAML anchor or alias (line %d): write that part out in full", n.Line)
	}
	switch {
	case new.Kind == yaml.MappingNode && old.Kind == yaml.MappingNode && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(old.Content); i += 2 {
			if k := old.Content[i].Value; value(new, k) == nil {
				deleteKey(n, k)
			}
		}
		for i := 0; i+1 < len(new.Content); i += 2 {
			k, nv := new.Content[i].Value, new.Content[i+1]
			ov, cur := value(old, k), value(n, k)
			switch {
			case ov != nil && equal(ov, nv):
				// Unchanged; absent from n when it is a zero value the API writes out (resources: {}).
			case cur == nil:
				insertKey(n, k, restyle(nv))
				// A one-line {name: a, image: b} that grows reads better as a block.
				n.Style &^= yaml.FlowStyle
			case ov == nil:
				replace(cur, restyle(nv))
			default:
				if err := sync(cur, ov, nv); err != nil {
					return err
				}
			}
		}
		return nil
	case new.Kind == yaml.SequenceNode && old.Kind == yaml.SequenceNode && n.Kind == yaml.SequenceNode && len(n.Content) == len(old.Content):
		grown := len(new.Content) - len(old.Content)
		switch {
		case grown > 0 && equalAll(new.Content[grown:], old.Content):
			var head []*yaml.Node
			for _, c := range new.Content[:grown] {
				head = append(head, restyle(c))
			}
			n.Content = append(head, n.Content...)
		case grown > 0 && equalAll(new.Content[:len(old.Content)], old.Content):
			for _, c := range new.Content[len(old.Content):] {
				n.Content = append(n.Content, restyle(c))
			}
		default:
			common := min(len(old.Content), len(new.Content))
			for i := 0; i < common; i++ {
				if err := sync(n.Content[i], old.Content[i], new.Content[i]); err != nil {
					return err
				}
			}
			for _, c := range new.Content[common:] {
				n.Content = append(n.Content, restyle(c))
			}
			n.Content = n.Content[:len(new.Content)]
		}
		return nil
	}
	replace(n, restyle(new))
	return nil
}

func equalAll(a, b []*yaml.Node) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// replace puts v in n's place, keeping n's comments.
func replace(n, v *yaml.Node) {
	head, line, foot := n.HeadComment, n.LineComment, n.FootComment
	*n = *v
	n.HeadComment, n.LineComment, n.FootComment = head, line, foot
}

func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// placeAfter and placeBefore put a new key where a person would write it.
var (
	placeAfter = map[string][]string{
		"command": {"image", "name"},
		"args":    {"command", "image", "name"},
		"env":     {"envFrom", "ports", "workingDir", "args", "command", "image", "name"},
	}
	placeBefore = map[string][]string{
		"initContainers":     {"containers"},
		"serviceAccountName": {"restartPolicy", "terminationGracePeriodSeconds", "initContainers", "containers"},
	}
)

func insertKey(m *yaml.Node, key string, v *yaml.Node) {
	k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
	at := len(m.Content)
	for _, b := range placeBefore[key] {
		if i := keyIndex(m, b); i >= 0 {
			at = i
			break
		}
	}
	for _, a := range placeAfter[key] {
		if i := keyIndex(m, a); i >= 0 {
			at = i + 2
			break
		}
	}
	m.Content = append(m.Content[:at], append([]*yaml.Node{k, v}, m.Content[at:]...)...)
}

func keyIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// restyle turns a node decoded from JSON into one that reads like hand-written YAML: block
// mappings, plain scalars where YAML allows them (the encoder quotes the rest), and lists of a
// few short scalars in flow style, as deploy/job-example.yaml writes command and args.
func restyle(n *yaml.Node) *yaml.Node {
	c := *n
	c.Style = 0
	c.Line, c.Column = 0, 0
	c.Content = nil
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "resources" && v.Kind == yaml.MappingNode && len(v.Content) == 0 {
				continue // the zero value the API types write out: nobody writes it by hand
			}
			c.Content = append(c.Content, restyle(k), restyle(v))
		}
	} else {
		for _, ch := range n.Content {
			c.Content = append(c.Content, restyle(ch))
		}
	}
	switch c.Kind {
	case yaml.SequenceNode:
		if shortScalars(c.Content) {
			c.Style = yaml.FlowStyle
		}
	case yaml.MappingNode:
		if len(c.Content) == 0 {
			c.Style = yaml.FlowStyle
		}
	}
	return &c
}

func shortScalars(ns []*yaml.Node) bool {
	total := 0
	for _, n := range ns {
		if n.Kind != yaml.ScalarNode || strings.ContainsAny(n.Value, "\n,[]{}#:\"'") {
			return false
		}
		total += len(n.Value) + 2
	}
	return total <= 60
}

// writeJSON writes a node as indented JSON, keys in the node's order.
func writeJSON(w io.Writer, n *yaml.Node, indent string) error {
	switch n.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		open, close := "{", "}"
		if n.Kind == yaml.SequenceNode {
			open, close = "[", "]"
		}
		if len(n.Content) == 0 {
			_, err := io.WriteString(w, open+close)
			return err
		}
		inner := indent + "  "
		io.WriteString(w, open+"\n")
		step := 1
		if n.Kind == yaml.MappingNode {
			step = 2
		}
		for i := 0; i < len(n.Content); i += step {
			io.WriteString(w, inner)
			if step == 2 {
				k, _ := jsonMarshalString(n.Content[i].Value)
				w.Write(append(k, ':', ' '))
			}
			if err := writeJSON(w, n.Content[i+step-1], inner); err != nil {
				return err
			}
			if i+step < len(n.Content) {
				io.WriteString(w, ",")
			}
			io.WriteString(w, "\n")
		}
		_, err := io.WriteString(w, indent+close)
		return err
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float", "!!bool":
			_, err := io.WriteString(w, n.Value)
			return err
		case "!!null":
			_, err := io.WriteString(w, "null")
			return err
		}
		b, _ := jsonMarshalString(n.Value)
		_, err := w.Write(b)
		return err
	case yaml.AliasNode:
		return writeJSON(w, n.Alias, indent)
	}
	return errors.New("cannot write this YAML node as JSON")
}

func jsonMarshalString(s string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
