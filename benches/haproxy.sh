# Sourced by peers.sh and ab.sh, so that both run HAProxy with the same config.
#
# haproxy_conf PORT [KIND]: the config of HAProxy on 127.0.0.1:PORT, least connections over the
# echo backends on BACKENDS (ports) with a cap of CAP each, WORKERS threads; with KIND (ecdsa,
# rsa), the frontend terminates TLS with $WORK/certs/KIND.pem.
haproxy_conf() {
  local port=$1 kind=${2:-} i bind
  bind="127.0.0.1:$port"
  [[ -n $kind ]] && bind="$bind ssl crt $WORK/certs/$kind.pem alpn http/1.1"
  cat <<EOF
global
    # 2 fds per tunnel under a 20000 fd limit
    maxconn 9960
    nbthread $WORKERS
defaults
    mode http
    maxconn 9960
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
    timeout http-request 10s
frontend fe
    bind $bind
    default_backend be
backend be
    balance leastconn
EOF
  for i in 0 1 2; do echo "    server b$i 127.0.0.1:${BACKENDS[$i]} maxconn $CAP"; done
}
