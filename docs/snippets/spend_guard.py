from kling_provider.operators.kling import KlingTextToVideoOperator

prompts = ["A raccoon in a sequoia forest", "A fox in the snow"]  # or an upstream task's output

KlingTextToVideoOperator.partial(
    task_id="generate", duration=5,
    max_cost_usd=2.0,      # fail before the POST when the estimate is above $2
    check_balance=True,    # and when the account balance cannot pay it
).expand(prompt=prompts)
