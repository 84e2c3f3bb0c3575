package testenv

import (
	"encoding/base64"
	"fmt"
	"os"
)

// writeKubeconfig writes a kubeconfig for host with the CA and client
// certificate embedded, so the file stays valid when copied elsewhere.
func writeKubeconfig(path, host, caFile, certFile, keyFile, user string) error {
	var data [3]string
	for i, f := range []string{caFile, certFile, keyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		data[i] = base64.StdEncoding.EncodeToString(b)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: koordinator-testenv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: koordinator-testenv
  context:
    cluster: koordinator-testenv
    user: %s
    namespace: default
current-context: koordinator-testenv
`, host, data[0], user, data[1], data[2], user)
	return os.WriteFile(path, []byte(kc), 0o600)
}
