#!/usr/bin/env bash
# Makes a development CA and the certificates the stack needs for TLS and
# mutual TLS, with openssl:
#
#   deploy/scripts/make-dev-certs.sh [dir]      # default: deploy/certs/dev
#
#   ca.crt, ca.key          the development CA (keep ca.key to yourself)
#   service.crt/.key        every service's server and client certificate; its
#                           names cover npm start (localhost, 127.0.0.1-3),
#                           compose's service names and the NIC wire's name
#   client.crt/.key         a client's certificate (tools, tests)
#
# Then point the services and clients at them:
#   P2P_TLS_CA=<dir>/ca.crt P2P_TLS_CERT=<dir>/service.crt P2P_TLS_KEY=<dir>/service.key npm start
# Existing files are kept; delete the directory to start over.
# P2P_CERTS_UID=<uid> hands service.key to that user (the containers' 1000),
# for docker-compose.tls.yml.
set -euo pipefail
dir=${1:-"$(dirname "$0")/../certs/dev"}
mkdir -p "$dir"
cd "$dir"
umask 077

days=825
if [[ ! -f ca.key ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/O=p2p-dmabuf development/CN=p2p-dmabuf dev CA" \
    -keyout ca.key -out ca.crt 2>/dev/null
fi

# issue <name> <common name> <extended key usage> <subjectAltName>
issue() {
  local name=$1 cn=$2 usage=$3 san=$4
  [[ -f $name.key && -f $name.crt ]] && return 0
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/O=p2p-dmabuf development/CN=$cn" \
    -keyout "$name.key" -out "$name.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$usage" "$san" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -sha256 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

issue service p2p-dmabuf-service serverAuth,clientAuth \
  "DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:::1,DNS:pci-emu,DNS:dmabuf-registry,DNS:vfio-pci,DNS:rdma-nic-a,DNS:rdma-nic-b,DNS:rdma-nic"
issue client p2p-dmabuf-client clientAuth "DNS:p2p-dmabuf-client"
chmod 0644 ca.crt service.crt client.crt
if [[ -n ${P2P_CERTS_UID:-} ]]; then
  chown "$P2P_CERTS_UID" service.key
fi
echo "development certificates in $(pwd): ca.crt, service.crt/.key, client.crt/.key"
