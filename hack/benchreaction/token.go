package main

// The wrappers authenticate as koordinator does in a pod: with a ServiceAccount token, not the
// admin client certificate (a client-certificate TLS handshake costs a fresh process a few ms
// more than a token one). In a pod they would use the in-cluster configuration; here KUBECONFIG
// names a kubeconfig holding the token.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// serviceAccount is the wrappers' ServiceAccount, Role and RoleBinding, as deploy/rbac.yaml.
const serviceAccount = "koordinator"

// tokenExpiration bounds the token; the benchmark's -timeout is shorter.
const tokenExpiration = 2 * time.Hour

// tokenKubeconfig makes deploy/rbac.yaml's ServiceAccount in the benchmark's namespace (allowed to
// list and watch pods), gets a token for it through the TokenRequest API (as the kubelet does for
// a pod), and writes a kubeconfig with admin's server and CA and that token under b.tmp. It
// returns the kubeconfig's path once the token may list pods.
func (b *bench) tokenKubeconfig(ctx context.Context, admin *rest.Config) (string, error) {
	meta := metav1.ObjectMeta{Name: serviceAccount}
	sas := b.client.CoreV1().ServiceAccounts(namespace)
	if _, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	role := &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
	}}
	if _, err := b.client.RbacV1().Roles(namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: meta,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: serviceAccount},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: namespace}},
	}
	if _, err := b.client.RbacV1().RoleBindings(namespace).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	seconds := int64(tokenExpiration / time.Second)
	tr, err := sas.CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}

	ca := admin.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(admin.CAFile); err != nil {
			return "", err
		}
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: ca}
	kc.AuthInfos[serviceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: serviceAccount, Namespace: namespace}
	kc.CurrentContext = "local"
	path := filepath.Join(b.tmp, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", err
	}

	// The API server's authorizer learns of the RoleBinding from its informer: wait until the
	// token may list pods, so that the first wrapper is not refused.
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return "", err
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return "", err
	}
	limit := time.Now().Add(waitLimit)
	for {
		_, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return path, nil
		}
		if time.Now().After(limit) {
			return "", fmt.Errorf("the token may not list pods within %s: %w", waitLimit, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
}
