"""Profile HyperBatch's own processes without touching product code (used by bench/profile_local.py).

Python imports `sitecustomize` at start-up from sys.path, so putting this
directory on PYTHONPATH of the daemon (which its workers inherit) profiles:

    HB_PROFILE_DIR=/dir          where to write one file per profiled process
    HB_PROFILE=cprofile          cProfile of the main thread (deterministic; call counts)
    HB_PROFILE=sample            a sampler thread: every HB_PROFILE_INTERVAL seconds (default 0.002)
                                 it records every thread's stack (sys._current_frames), i.e. wall
                                 time per thread including time blocked in syscalls and sleeps

What-if experiments (bench only; the product is not changed):

    HB_WHATIF_POLL_MAX=0.01      agents back off their idle polling to at most this many seconds
                                 (hyperbatch/agent.py Settings.poll_max, 0.1 in the product)

Only `python -m hyperbatch.wiring.worker` and `python -m hyperbatch.wiring.daemon` are
profiled; anything else (the CLI, the benchmark) is left alone. Results are
written at interpreter exit (both exit cleanly on SIGTERM).
"""

import os

_DIR = os.environ.get("HB_PROFILE_DIR")


def _kind():
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    for name, kind in ((b"hyperbatch.wiring.worker", "agent"), (b"hyperbatch.wiring.daemon", "daemon")):
        if name in argv:
            return kind
    return None


def _start(kind):
    import atexit
    import json
    import sys
    import threading
    import time

    mode = os.environ.get("HB_PROFILE", "cprofile")
    path = os.path.join(_DIR, f"{kind}-{os.getpid()}")
    if mode == "cprofile":
        import cProfile

        prof = cProfile.Profile()
        prof.enable()

        def dump():
            prof.disable()
            prof.dump_stats(path + ".prof")

        atexit.register(dump)
        return

    interval = float(os.environ.get("HB_PROFILE_INTERVAL", "0.002"))
    counts = {}
    stop = threading.Event()
    me = []

    def loop():
        me.append(threading.get_ident())
        names = {}
        while not stop.is_set():
            time.sleep(interval)
            for ident, frame in sys._current_frames().items():
                if ident == me[0]:
                    continue
                name = names.get(ident)
                if name is None:
                    for t in threading.enumerate():
                        names[t.ident] = t.name
                    name = names.get(ident, str(ident))
                stack = []
                while frame is not None and len(stack) < 40:
                    code = frame.f_code
                    stack.append(f"{os.path.basename(code.co_filename)}:{code.co_name}:{frame.f_lineno}")
                    frame = frame.f_back
                key = name + ";" + ";".join(reversed(stack))
                counts[key] = counts.get(key, 0) + 1

    thread = threading.Thread(target=loop, daemon=True, name="hb-sampler")
    thread.start()

    def dump():
        stop.set()
        thread.join(1)
        with open(path + ".samples.json", "w") as f:
            json.dump({"interval": interval, "stacks": counts}, f)

    atexit.register(dump)


def _whatif_poll_max(value):
    from hyperbatch.services import agent

    original = agent.Settings.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.poll_max = value

    agent.Settings.__init__ = init


_k = _kind() if (_DIR or os.environ.get("HB_WHATIF_POLL_MAX")) else None
if _k == "agent" and os.environ.get("HB_WHATIF_POLL_MAX"):
    _whatif_poll_max(float(os.environ["HB_WHATIF_POLL_MAX"]))
if _DIR and _k:
    _start(_k)
