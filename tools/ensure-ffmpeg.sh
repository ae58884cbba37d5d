#!/usr/bin/env bash
# ffmpeg/ffprobe power the media-pipeline example (probe + thumbnail). Install them from Debian's
# packages when we can (root with apt-get, as on CI); otherwise say so: the pipeline task then
# skips cleanly and its tests report the skip.
if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ffmpeg (Debian package) for the media pipeline example..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg) >/dev/null 2>&1 \
    && exit 0
fi
echo "ffmpeg is not installed and could not be installed here: the media probe task will skip." >&2
exit 0
