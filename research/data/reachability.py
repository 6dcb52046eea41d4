"""Can this machine reach a host? Asked before a download, so that offline a
run stops at once with the flag to set instead of after minutes of retries."""
import socket
import urllib.parse


def host_reachable(url: str, timeout_s: float = 3.0) -> bool:
  """Whether `url`'s host accepts a connection on its port (SVHN's is plain
  http, on 80)."""
  parsed = urllib.parse.urlparse(url)
  port = parsed.port or (80 if parsed.scheme == 'http' else 443)
  try:
    socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()
    return True
  except OSError:
    return False
