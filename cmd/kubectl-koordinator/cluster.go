package main

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"

	"github.com/koordinator-dev/koordinator/internal/lint"
)

// accessChecker says whether a ServiceAccount may do verb on pods in its namespace.
type accessChecker func(ctx context.Context, namespace, serviceAccount, verb string) (allowed bool, reason string, err error)

// newAccessChecker asks the API server with SubjectAccessReviews (which the user running lint
// must be allowed to create); tests replace it.
var newAccessChecker = func(cfg *rest.Config) (accessChecker, error) {
	client, err := authorizationclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, ns, sa, verb string) (bool, string, error) {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			// What the API server authenticates a pod's token as.
			User:   "system:serviceaccount:" + ns + ":" + sa,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: verb, Resource: "pods",
			},
		}}
		res, err := client.SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return false, "", err
		}
		return res.Status.Allowed, res.Status.Reason, nil
	}, nil
}

// rbacCheck checks, for a pod that needs the API, that its ServiceAccount may list and watch
// pods in the namespace the pod will run in. Answers are cached by namespace and account.
type rbacCheck struct {
	check   accessChecker
	answers map[string]string // "ns/sa" -> "" when allowed, else the verbs denied and why
}

func (r *rbacCheck) finding(ctx context.Context, ns, sa string) (*lint.Finding, error) {
	key := ns + "/" + sa
	missing, ok := r.answers[key]
	if !ok {
		var denied []string
		for _, verb := range []string{"list", "watch"} {
			allowed, reason, err := r.check(ctx, ns, sa, verb)
			if err != nil {
				return nil, fmt.Errorf("--cluster: asking whether ServiceAccount %s may %s pods in namespace %s: %w", sa, verb, ns, err)
			}
			if !allowed {
				if reason != "" {
					verb += " (" + reason + ")"
				}
				denied = append(denied, verb)
			}
		}
		missing = strings.Join(denied, ", ")
		r.answers[key] = missing
	}
	if missing == "" {
		return nil, nil
	}
	return &lint.Finding{
		Rule:    lint.RuleRBAC,
		Message: fmt.Sprintf("its ServiceAccount %s may not %s pods in namespace %s, and koordinator watches its pod through the API", sa, missing, ns),
		Fix:     fmt.Sprintf("kubectl apply -n %s -f deploy/rbac.yaml and set serviceAccountName: koordinator (inject --rbac does both), or grant %s pods: list, watch", ns, sa),
	}, nil
}
