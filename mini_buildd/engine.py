"""The engine: runs while the Daemon model is Active (FTP incoming, packager, builder, crontab).

Its parts arrive with the upload pipeline; for now it records whether it runs, which the status
call reports as load (-1 when stopped).
"""

import logging
import threading

LOG = logging.getLogger(__name__)


class Engine:
    def __init__(self):
        self._lock = threading.Lock()
        self.running = False

    def start(self):
        with self._lock:
            if not self.running:
                self.running = True
                LOG.info("Engine started.")

    def stop(self):
        with self._lock:
            if self.running:
                self.running = False
                LOG.info("Engine stopped.")
