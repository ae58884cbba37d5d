# Run by tests/test_distribution.py in a virtualenv holding only a released Airflow.
pip install dist/airflow_provider_kling-*-py3-none-any.whl
airflow providers get airflow-provider-kling
