package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// Apply creates every object of the manifest at path as it is, in namespace ns: the kinds the
// project's manifests use (ServiceAccount, Role, RoleBinding, Job, CronJob), decoded strictly. A
// RoleBinding's ServiceAccount subject without a namespace gets ns, as `kubectl apply -n` gives
// it.
func Apply(ctx context.Context, client kubernetes.Interface, ns, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, doc := range SplitYAML(b) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if meta.Kind == "" {
			continue
		}
		if err := create(ctx, client, ns, meta.Kind, doc); err != nil {
			return fmt.Errorf("%s: %s: %w", path, meta.Kind, err)
		}
	}
	return nil
}

func create(ctx context.Context, client kubernetes.Interface, ns, kind string, doc []byte) error {
	var err error
	switch kind {
	case "ServiceAccount":
		var o corev1.ServiceAccount
		if err = yaml.UnmarshalStrict(doc, &o); err == nil {
			_, err = client.CoreV1().ServiceAccounts(ns).Create(ctx, &o, metav1.CreateOptions{})
		}
	case "Role":
		var o rbacv1.Role
		if err = yaml.UnmarshalStrict(doc, &o); err == nil {
			_, err = client.RbacV1().Roles(ns).Create(ctx, &o, metav1.CreateOptions{})
		}
	case "RoleBinding":
		var o rbacv1.RoleBinding
		if err = yaml.UnmarshalStrict(doc, &o); err == nil {
			for i := range o.Subjects {
				if o.Subjects[i].Kind == rbacv1.ServiceAccountKind && o.Subjects[i].Namespace == "" {
					o.Subjects[i].Namespace = ns
				}
			}
			_, err = client.RbacV1().RoleBindings(ns).Create(ctx, &o, metav1.CreateOptions{})
		}
	case "Job":
		var o batchv1.Job
		if err = yaml.UnmarshalStrict(doc, &o); err == nil {
			_, err = client.BatchV1().Jobs(ns).Create(ctx, &o, metav1.CreateOptions{})
		}
	case "CronJob":
		var o batchv1.CronJob
		if err = yaml.UnmarshalStrict(doc, &o); err == nil {
			_, err = client.BatchV1().CronJobs(ns).Create(ctx, &o, metav1.CreateOptions{})
		}
	default:
		err = fmt.Errorf("kind not handled by testenv.Apply")
	}
	return err
}

// SplitYAML splits a multi-document YAML stream at its "---" lines.
func SplitYAML(b []byte) [][]byte {
	var docs [][]byte
	var cur []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimRight(line, " \t") == "---" {
			docs = append(docs, []byte(strings.Join(cur, "\n")))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return append(docs, []byte(strings.Join(cur, "\n")))
}
