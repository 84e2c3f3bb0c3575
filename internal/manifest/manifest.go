// Package manifest reads Kubernetes manifests (multi-document YAML, or one JSON document, Lists
// included), finds every pod template in them, and writes back only what changed: a document
// none of whose templates changed is written byte for byte as it was read, and in one that did
// change every field not changed keeps its text, comments and place.
//
// YAML goes through sigs.k8s.io/kustomize/kyaml (go.yaml.in/yaml/v3 nodes, as kubectl and
// kustomize use): it keeps comments, key order, quoting and block-scalar styles, and kyaml
// derives the file's sequence indentation so that re-encoding keeps it.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// Document is one document of a file.
type Document struct {
	Index int    // 1-based, in the file
	sep   []byte // the "---" line before it, if any, as read
	body  []byte // its text as read
	json  bool
	root  *yaml.Node // the document node; nil for a document with no content
	dirty bool
}

// Parse splits data into documents and parses each. A file whose first character (after
// whitespace) is '{' or '[' is one JSON document; anything else is a YAML stream.
func Parse(data []byte) ([]*Document, error) {
	var docs []*Document
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		docs = []*Document{{Index: 1, body: data, json: true}}
	} else {
		docs = split(data)
	}
	for _, d := range docs {
		var n yaml.Node
		if err := yaml.Unmarshal(d.body, &n); err != nil {
			return nil, fmt.Errorf("document %d: %w", d.Index, err)
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			d.root = &n
		}
	}
	return docs, nil
}

// split cuts a YAML stream at its "---" lines, keeping every byte.
func split(data []byte) []*Document {
	var docs []*Document
	cur := &Document{Index: 1}
	start := 0
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off + 1
		}
		line := data[off:end]
		if isSeparator(line) {
			cur.body = data[start:off]
			if off > 0 || len(cur.sep) > 0 {
				docs = append(docs, cur)
			}
			cur = &Document{Index: len(docs) + 1, sep: line}
			start = end
		}
		off = end
	}
	cur.body = data[start:]
	return append(docs, cur)
}

func isSeparator(line []byte) bool {
	line = bytes.TrimRight(line, "\r\n")
	return bytes.HasPrefix(line, []byte("---")) && (len(line) == 3 || line[3] == ' ' || line[3] == '\t')
}

// Format writes the documents back: each unchanged one as it was read.
func Format(docs []*Document) ([]byte, error) {
	var out bytes.Buffer
	for _, d := range docs {
		out.Write(d.sep)
		if !d.dirty {
			out.Write(d.body)
			continue
		}
		b, err := d.encode()
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", d.Index, err)
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}

// Changed reports whether any document changed.
func Changed(docs []*Document) bool {
	for _, d := range docs {
		if d.dirty {
			return true
		}
	}
	return false
}

func (d *Document) encode() ([]byte, error) {
	if d.json {
		var b bytes.Buffer
		if err := writeJSON(&b, d.root.Content[0], ""); err != nil {
			return nil, err
		}
		b.WriteByte('\n')
		return b.Bytes(), nil
	}
	style := yaml.SequenceIndentStyle(yaml.DeriveSeqIndentStyle(string(d.body)))
	return yaml.MarshalWithOptions(d.root, &yaml.EncoderOptions{SeqIndent: style})
}

// Template is one pod template found in a document.
type Template struct {
	Doc       *Document
	Where     string // "Job/name", "List item 2: Deployment/name"
	Kind      string // the kind of the object that holds it
	Namespace string // that object's metadata.namespace; "" when the manifest leaves it to kubectl -n
	Value     corev1.PodTemplateSpec
	node      *yaml.Node // the mapping with metadata and spec
}

// templatePath is where each kind keeps its pod template, from the object's root; nil: the
// object itself is the pod (metadata and spec).
var templatePath = map[string][]string{
	"Pod":                   nil,
	"PodTemplate":           {"template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
}

// Templates finds the pod templates of the document, items of Lists included.
func (d *Document) Templates() ([]*Template, error) {
	if d.root == nil {
		return nil, nil
	}
	var out []*Template
	var visit func(obj *yaml.Node, prefix string) error
	visit = func(obj *yaml.Node, prefix string) error {
		if obj.Kind != yaml.MappingNode {
			return nil
		}
		kind := scalar(lookup(obj, "kind"))
		name := scalar(lookup(obj, "metadata", "name"))
		if items := lookup(obj, "items"); items != nil && items.Kind == yaml.SequenceNode && (kind == "List" || len(kind) > 4 && kind[len(kind)-4:] == "List") {
			for i, item := range items.Content {
				if err := visit(item, fmt.Sprintf("%s%s item %d: ", prefix, kind, i+1)); err != nil {
					return err
				}
			}
			return nil
		}
		path, ok := templatePath[kind]
		if !ok {
			return nil
		}
		where := prefix + kind + "/" + name
		node := obj
		if path != nil {
			node = lookup(obj, path...)
		}
		if node == nil || node.Kind != yaml.MappingNode {
			return nil
		}
		t := &Template{Doc: d, Where: where, Kind: kind, Namespace: scalar(lookup(obj, "metadata", "namespace")), node: node}
		if err := decode(node, &t.Value); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, t)
		return nil
	}
	if err := visit(d.root.Content[0], ""); err != nil {
		return nil, err
	}
	return out, nil
}

// decode reads a mapping node into a pod template, the way the API server would (unknown
// fields are dropped here; they stay in the node).
func decode(n *yaml.Node, into *corev1.PodTemplateSpec) error {
	var m yaml.Node
	m.Kind, m.Tag = yaml.MappingNode, "!!map"
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k == "metadata" || k == "spec" {
			m.Content = append(m.Content, n.Content[i], n.Content[i+1])
		}
	}
	b, err := yaml.Marshal(&m)
	if err != nil {
		return err
	}
	if err := sigsyaml.Unmarshal(b, into); err != nil {
		return fmt.Errorf("not a valid pod template: %w", err)
	}
	return nil
}

// Set writes the template's new value into the document: only the fields that differ from
// Value are touched.
func (t *Template) Set(v corev1.PodTemplateSpec) error {
	oldN, err := toNode(t.Value)
	if err != nil {
		return err
	}
	newN, err := toNode(v)
	if err != nil {
		return err
	}
	if equal(oldN, newN) {
		return nil
	}
	if err := sync(t.node, oldN, newN); err != nil {
		return fmt.Errorf("%s: %w", t.Where, err)
	}
	t.Value = v
	t.Doc.dirty = true
	return nil
}

// toNode turns a typed value into a node through its JSON form, which keeps the API's field order.
func toNode(v any) (*yaml.Node, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	if len(n.Content) != 1 {
		return nil, errors.New("encoding a pod template: empty")
	}
	return n.Content[0], nil
}

// lookup follows a path of mapping keys.
func lookup(n *yaml.Node, path ...string) *yaml.Node {
	for _, k := range path {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		n = value(n, k)
	}
	return n
}

func value(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}
