import os

os.environ["AIRFLOW_CONN_KLING_DEFAULT"] = (
    '{"conn_type": "kling", "host": "http://127.0.0.1:8765", "password": "kling-simulator-key"}')
from kling_provider.hooks.kling import KlingHook

hook = KlingHook()
generation_id = hook.create_generation("klingai/v2-master-text-to-video", prompt="A raccoon")
video = hook.wait_for_generation(generation_id, poll_interval=1)
assert video.video_url is not None, video
print(hook.download_video(video.video_url, "raccoon.mp4", expected_size=video.file_size))
