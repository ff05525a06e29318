#!/usr/bin/env python
"""JustNews Memory agent stand-in for the justnews-host test images.

Loads the sentence-embedding model the way the real Memory agent does, encodes one sentence,
writes a readiness file and stays alive until SIGTERM. Like the real agent it serves HTTP on
127.0.0.1 (MEMORY_PORT, default 8007): GET /health answers {"status": "ok", "agent": "memory"} as
soon as the process runs, GET /ready answers {"ready": false} until the model is loaded and encoded,
then {"ready": true, ...} with the same details as the readiness file. The test containers share
the machine's network, so each test image sets its own MEMORY_PORT in /etc/justnews/memory.env.

Environment (as on a real host):
  SENTENCE_TRANSFORMER_MODEL  model name (default all-MiniLM-L6-v2); a bare name means
                              sentence-transformers/<name> on the Hub
  MEMORY_MODEL_CACHE          a saved model folder <MEMORY_MODEL_CACHE>/<basename> is used first
  HF_HOME, HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT: read by huggingface_hub
  HF_HUB_TOKEN or HUGGINGFACE_HUB_TOKEN: passed to huggingface_hub.login() (failure tolerated)
  MEMORY_READY_FILE           readiness file (default /run/justnews/memory.ready; empty: none);
                              a file that cannot be written (no RuntimeDirectory=) only warns
  MEMORY_PORT                 HTTP port on 127.0.0.1 (default 8007, as upstream)

Backend: sentence-transformers (with torch) when it imports (Debian 12 image); otherwise a
torch-free loader (Debian 13 image): huggingface_hub resolution + safetensors + tokenizers and a
numpy BERT forward pass with mean pooling and L2 normalisation.
"""
import http.server
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time

LOG = logging.getLogger("justnews.memory")

# Test-host guard: these containers must never reach the real Hub (the test machine may talk to
# 127.0.0.1 only). Unless HF_ENDPOINT points at a loopback server, point it at a closed loopback
# port, so an online load behaves like a host whose Hub is unreachable. Must run before
# huggingface_hub is imported (it reads its environment at import time).
_ENDPOINT = os.environ.get("HF_ENDPOINT", "")
if not re.match(r"^https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)", _ENDPOINT):
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    HUB_GUARD = True
else:
    HUB_GUARD = False
SENTENCE = "JustNews memory agent readiness check."
READY_FILE = os.environ.get("MEMORY_READY_FILE", "/run/justnews/memory.ready")
PORT = int(os.environ.get("MEMORY_PORT") or 8007)
STATE = {"ready": False}
MODEL_FILES = ("config.json", "tokenizer.json", "model.safetensors")


def repo_id_for(name):
    # sentence-transformers' rule: a bare name gets the sentence-transformers/ prefix.
    return name if "/" in name else "sentence-transformers/" + name


def commit_from_path(path):
    m = re.search(r"/snapshots/([0-9a-f]{40})(/|$)", str(path))
    return m.group(1) if m else None


def hub_login():
    token = os.environ.get("HF_HUB_TOKEN") or os.environ.get("HUGGINGFACE_HUB_TOKEN")
    if not token:
        return
    try:
        import huggingface_hub

        huggingface_hub.login(token=token)
        LOG.info("logged in to the Hugging Face Hub")
    except Exception as exc:  # the real agent tolerates a failed (e.g. offline) login
        LOG.warning("Hugging Face Hub login failed (%s); continuing", type(exc).__name__)


def local_model_dir(name):
    root = os.environ.get("MEMORY_MODEL_CACHE")
    if not root:
        return None
    path = os.path.join(root, os.path.basename(name.rstrip("/")))
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        return path
    return None


# ---------------------------------------------------------------- sentence-transformers backend
def load_st(name, local):
    from sentence_transformers import SentenceTransformer

    if local:
        model = SentenceTransformer(local)
        # A saved-model folder may be a link into the hub cache: report the snapshot it resolves to.
        return model, local, commit_from_path(os.path.realpath(local))
    model = SentenceTransformer(name)
    commit = None
    snapshot = None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id_for(name), "config.json")
        if isinstance(cached, str):
            snapshot = os.path.dirname(cached)
            commit = commit_from_path(cached)
    except Exception as exc:
        LOG.warning("could not resolve the snapshot commit: %s", exc)
    return model, snapshot, commit


def encode_st(model):
    vec = model.encode([SENTENCE])[0]
    return [float(x) for x in vec]


# ---------------------------------------------------------------- torch-free backend
def resolve_files(name, local):
    if local:
        return {f: os.path.join(local, f) for f in MODEL_FILES}
    from huggingface_hub import hf_hub_download

    # hf_hub_download honours HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE exactly as the library does
    # for sentence-transformers (offline: refs/main -> snapshots/<commit>/<file>).
    repo = repo_id_for(name)
    return {f: hf_hub_download(repo, f) for f in MODEL_FILES}


def _layer_norm(x, w, b, eps):
    import numpy as np

    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x):
    import numpy as np

    erf = np.vectorize(math.erf, otypes=[np.float32])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


class NumpyBert:
    def __init__(self, files):
        import numpy as np
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        with open(files["config.json"]) as fh:
            self.cfg = json.load(fh)
        raw = load_file(files["model.safetensors"])
        self.w = {k[5:] if k.startswith("bert.") else k: v.astype(np.float32) for k, v in raw.items()}
        self.tok = Tokenizer.from_file(files["tokenizer.json"])
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=256)

    def encode(self, text):
        import numpy as np

        w, cfg = self.w, self.cfg
        eps = cfg.get("layer_norm_eps", 1e-12)
        heads = cfg["num_attention_heads"]
        enc = self.tok.encode(text)
        ids = np.array(enc.ids)
        n = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(n)]
             + w["embeddings.token_type_embeddings.weight"][np.array(enc.type_ids)])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        hidden = x.shape[-1]
        hd = hidden // heads

        def lin(v, p):
            return v @ w[p + ".weight"].T + w[p + ".bias"]

        for i in range(cfg["num_hidden_layers"]):
            p = "encoder.layer.%d." % i
            q = lin(x, p + "attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
            k = lin(x, p + "attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
            v = lin(x, p + "attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s = s / s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, hidden)
            x = _layer_norm(lin(ctx, p + "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
            h = _gelu(lin(x, p + "intermediate.dense"))
            x = _layer_norm(lin(h, p + "output.dense") + x,
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        vec = x.mean(0)  # mean pooling (single sentence: no padding)
        vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        return [float(v) for v in vec]


def load_numpy(name, local):
    files = resolve_files(name, local)
    model = NumpyBert(files)
    if local:
        return model, local, commit_from_path(os.path.realpath(local))
    snap = os.path.dirname(files["config.json"])
    return model, snap, commit_from_path(files["config.json"])


# ---------------------------------------------------------------- HTTP (/health, /ready)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == "/health":
            body = {"status": "ok", "agent": "memory"}
        elif self.path == "/ready":
            body = dict(STATE)
        else:
            self.send_error(404)
            return
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 (signature of http.server)
        pass


def serve_http():
    """Bind 127.0.0.1:PORT (exits 1 when taken, like uvicorn) and answer in a daemon thread."""
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    except OSError as exc:
        LOG.error("cannot listen on 127.0.0.1:%d: %s", PORT, exc)
        sys.exit(1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    LOG.info("listening on http://127.0.0.1:%d (/health, /ready)", PORT)


# ---------------------------------------------------------------- main
def write_ready(info):
    if not READY_FILE:
        return
    try:
        d = os.path.dirname(READY_FILE)
        os.makedirs(d, exist_ok=True)
        tmp = READY_FILE + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(info, fh, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, READY_FILE)
    except OSError as exc:
        LOG.warning("no readiness file %s (%s); GET /ready still answers", READY_FILE, exc)


def remove_ready():
    if not READY_FILE:
        return
    try:
        os.unlink(READY_FILE)
    except OSError:
        pass


def on_term(signum, frame):
    LOG.info("signal %d: stopping", signum)
    remove_ready()
    sys.exit(0)


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    remove_ready()
    serve_http()
    name = os.environ.get("SENTENCE_TRANSFORMER_MODEL") or "all-MiniLM-L6-v2"
    LOG.info("model=%s HF_HOME=%s HF_HUB_CACHE=%s HUGGINGFACE_HUB_CACHE=%s HF_HUB_OFFLINE=%s",
             name, os.environ.get("HF_HOME"), os.environ.get("HF_HUB_CACHE"),
             os.environ.get("HUGGINGFACE_HUB_CACHE"), os.environ.get("HF_HUB_OFFLINE"))
    hub_login()
    if HUB_GUARD:
        LOG.warning("HF_ENDPOINT %r is not a loopback server: using %s (test-host guard)",
                    _ENDPOINT or None, os.environ["HF_ENDPOINT"])
    import importlib.util

    backend = "sentence-transformers" if importlib.util.find_spec("sentence_transformers") else "numpy"
    local = local_model_dir(name)
    t0 = time.monotonic()
    try:
        if not local:
            # Resolve the repository through huggingface_hub first (cheap): a host that cannot
            # resolve the model fails here without paying for the torch import on every restart.
            from huggingface_hub import hf_hub_download

            hf_hub_download(repo_id_for(name), "config.json")
        if backend == "sentence-transformers":
            model, path, commit = load_st(name, local)
            vec = encode_st(model)
        else:
            model, path, commit = load_numpy(name, local)
            vec = model.encode(SENTENCE)
    except Exception as exc:
        LOG.error("could not load model %s (%s backend): %s: %s",
                  name, backend, type(exc).__name__, exc)
        return 1
    info = {
        "model": name,
        "repo_id": None if local else repo_id_for(name),
        "source": local if local else "hub",
        "path": path,
        "commit": commit,
        "dim": len(vec),
        "backend": backend,
        "offline": os.environ.get("HF_HUB_OFFLINE"),
        "endpoint": os.environ.get("HF_ENDPOINT"),
        "hub_guard": HUB_GUARD,
        "pid": os.getpid(),
        "load_seconds": round(time.monotonic() - t0, 2),
        "embedding_head": [round(v, 6) for v in vec[:4]],
    }
    write_ready(info)
    STATE.update(info, ready=True)
    LOG.info("ready: %s", json.dumps(info, sort_keys=True))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
