# Shared settings for scripts/*: sourced, not run.
# Cargo from rustup may not be on PATH in a non-login shell (CI).
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
# One build directory outside the clone, reused by CI and later runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/coffer-target}"
export COFFER_VENV="${COFFER_VENV:-/var/tmp/coffer-venv}"
# Packaging tools (cargo-deb, cargo-generate-rpm), installed by scripts/package.
export COFFER_TOOLS="${COFFER_TOOLS:-/var/tmp/coffer-tools}"
case ":$PATH:" in *":$COFFER_TOOLS/bin:"*) ;; *) export PATH="$COFFER_TOOLS/bin:$PATH" ;; esac
