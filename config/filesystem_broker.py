"""The embedded broker: kombu's filesystem transport, with each message written whole before it can be seen.

kombu writes a message straight into the queue folder while a worker may already be listing it; a worker that
picked the file up before its bytes were written read an empty message, failed to decode it and exited (seen in
the throughput benchmark's embedded SMTP run: both workers gone, 16,679 recipients left queued). Written under
a name no queue matches and then renamed, which is atomic on one filesystem, a message appears complete or not
at all.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict, **kwargs: object) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")  # matches no queue
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
