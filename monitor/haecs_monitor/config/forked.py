"""Load the configuration in a child process, so the daemon keeps only the result.

Loading a large configuration builds far more than it keeps: PyYAML's node
graph alone is several KB per real server.  Freed, that memory still stays
with the process: Python's allocator returns an arena to the system only
when every object in it is gone, and the model's objects are scattered
through the arenas the loader filled.  At 30,000 real servers that was
about 100 MB of the daemon's RSS for good.  A forked child loads and pickles
the model; the daemon unpickles it into compact memory of its own.

Each service is pickled on its own.  A pickle's memo keeps every tuple it
made alive until the end of the load, the arguments each real server is
rebuilt from among them (about 220 B per real server); freed at the end,
they left that much of the daemon's memory as holes between the model's
objects for good.  One service at a time, the next service's objects
fill the holes its predecessor's memo left.

The child is a plain fork: call this before any thread or event loop runs.
"""

from __future__ import annotations

import gc
import io
import os
import pickle
from typing import Any, Optional, Union

from haecs_monitor.config.load import ConfigError, load_config
from haecs_monitor.config.model import MonitorConfig, ServiceConfig
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
        reply: object = (load_config(path, remembered), remembered)
    except ConfigError as error:
        reply = error.errors
    rest = io.BytesIO()
    pickler = _ServicesApart(rest, pickle.HIGHEST_PROTOCOL)
    pickler.dump(reply)
    return pickle.dumps(pickler.services, protocol=pickle.HIGHEST_PROTOCOL) + rest.getvalue()


class _ServicesApart(pickle.Pickler):
    """Pickles each ServiceConfig on its own (into `services`) and the rest
    with references to them, so that the configuration and the section
    memory still share them."""

    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol)
        self.services: list[bytes] = []
        self._numbers: dict[int, int] = {}  # by id: the reply holds every service meanwhile

    def persistent_id(self, obj: Any) -> Optional[int]:
        if obj.__class__ is not ServiceConfig:
            return None
        number = self._numbers.get(id(obj))
        if number is None:
            number = self._numbers[id(obj)] = len(self.services)
            self.services.append(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        return number


class _WithServices(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, services: list[ServiceConfig]) -> None:
        super().__init__(file)
        self._services = services

    def persistent_load(self, pid: Any) -> ServiceConfig:
        if pid.__class__ is not int or not 0 <= pid < len(self._services):
            raise pickle.UnpicklingError("no service %r" % (pid,))
        return self._services[pid]


def _reply(message: bytes) -> Union[tuple[MonitorConfig, SectionMemory], list[str], None]:
    """The child's model and section memory, or its list of errors; None when
    it sent neither."""
    # Without the cyclic collector's passes: the model holds no cycle, and at
    # 30,000 real servers the passes the new objects set off were a quarter
    # of the unpickle (about 0.1 s).
    collecting = gc.isenabled()
    gc.disable()
    try:
        stream = io.BytesIO(message)
        services = [pickle.loads(service) for service in pickle.load(stream)]
        if not all(service.__class__ is ServiceConfig for service in services):
            return None
        reply = _WithServices(stream, services).load()
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
