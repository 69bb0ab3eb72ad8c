"""Load the configuration in a child process, so the daemon keeps only the result.

Loading a large configuration builds far more than it keeps: PyYAML's node
graph alone is several KB per real server.  Freed, that memory still stays
with the process: Python's allocator returns an arena to the system only
when every object in it is gone, and the model's objects are scattered
through the arenas the loader filled.  At 30,000 real servers that was
about 100 MB of the daemon's RSS for good.  A forked child loads and pickles
the model; the daemon unpickles it into compact memory of its own.

The child is a plain fork: call this before any thread or event loop runs.
"""

from __future__ import annotations

import gc
import os
import pickle
from typing import Optional, Union

from haecs_monitor.config.load import ConfigError, load_config
from haecs_monitor.config.model import MonitorConfig
from haecs_monitor.config.sections import SectionMemory


def load_config_in_child(path: str, sections: Optional[SectionMemory] = None) -> MonitorConfig:
    """`load_config(path, sections)` done in a forked child: the same model or
    the same ConfigError, and `sections` as that load leaves it (the first
    reload then reads again only what changed).  Should the child fail
    otherwise (a bug, killed), the configuration is loaded here instead, so
    that any error is the real one."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load, send, leave without running any cleanup
        status = 0
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                out.write(_loaded_message(path, sections))
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as source:
        message = source.read()
    _pid, wait_status = os.waitpid(pid, 0)
    reply = _reply(message) if os.waitstatus_to_exitcode(wait_status) == 0 else None
    if reply is None:
        return load_config(path, sections)
    if isinstance(reply, tuple):
        config, remembered = reply
        if sections is not None:
            sections.adopt(remembered)
        return config
    raise ConfigError(reply)


def _loaded_message(path: str, sections: Optional[SectionMemory]) -> bytes:
    remembered = sections if sections is not None else SectionMemory()
    try:
        # One pickle: the memory's sections stay the model's own objects.
        reply: object = (load_config(path, remembered), remembered)
    except ConfigError as error:
        reply = error.errors
    return pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)


def _reply(message: bytes) -> Union[tuple[MonitorConfig, SectionMemory], list[str], None]:
    """The child's model and section memory, or its list of errors; None when
    it sent neither."""
    # Without the cyclic collector's passes: the model holds no cycle, and at
    # 30,000 real servers the passes the new objects set off were a quarter
    # of the unpickle (about 0.1 s).
    collecting = gc.isenabled()
    gc.disable()
    try:
        reply = pickle.loads(message)
    except Exception:  # nothing or half a message: the child died writing it
        return None
    finally:
        if collecting:
            gc.enable()
    if (
        isinstance(reply, tuple)
        and len(reply) == 2
        and isinstance(reply[0], MonitorConfig)
        and isinstance(reply[1], SectionMemory)
    ):
        return (reply[0], reply[1])
    if isinstance(reply, list) and all(isinstance(item, str) for item in reply):
        return reply
    return None
