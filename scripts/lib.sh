# Shared by the scripts in this folder: installs what a fresh machine lacks.
# Source it; it defines functions only.

# Runs apt-get install for the packages given, updating the lists once.
apt_install() {
  if [ -z "${LOAN_APT_UPDATED:-}" ]; then
    apt-get update -qq
    LOAN_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# protoc builds etcd-client's gRPC bindings.
ensure_protoc() {
  command -v protoc >/dev/null 2>&1 && return
  echo "==> installing protoc (Debian's protobuf-compiler)"
  apt_install protobuf-compiler
}

# Policies build for wasm32-wasip2.
ensure_wasm_target() {
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 && return
  echo "==> adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
}

# Builds the reference policy component.
build_policy() {
  echo "==> building the reference policy (plugins/reference)"
  cargo build --quiet --release --target wasm32-wasip2 \
    --manifest-path plugins/reference/Cargo.toml
}

# A TCP port nobody listens on.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether something accepts connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits up to $2 seconds for 127.0.0.1:$1 to accept connections.
wait_port() {
  local port=$1 deadline=$((SECONDS + $2))
  until port_open "$port"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      return 1
    fi
    sleep 0.2
  done
}
