export AIRFLOW_CONN_KLING_DEFAULT='{"conn_type": "kling", "password": "<your key>", "extra": {"endpoint_family": "legacy"}}'
