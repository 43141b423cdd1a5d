# ---------------------------------------------------------------------------
# web service — production autoscaling group
# Owner: platform-team@example.com   Runbook: https://wiki.example.com/web
# ---------------------------------------------------------------------------

region        = "eu-west-1"
environment   = "production"
instance_type = "m6i.large"

/*
 * Autoscaling thresholds.
 * NeuroPilot tunes the five values below every 6 hours (see its daily report);
 * a value changed here by hand is adopted as its new baseline.
 */
cpu_scale_up_threshold   = 80  # % CPU above which the group scales out
cpu_scale_down_threshold = 30  # % CPU below which the group scales in
latency_threshold_ms     = 250 // p95 latency that also triggers scale-out
min_instances            = 2
max_instances            = 200

health_check_grace_period = 120

availability_zones = [
  "eu-west-1a",
  "eu-west-1b",
  "eu-west-1c",
]

tags = {
  team        = "platform"
  cost_center = "cc-1234"
  managed_by  = "terraform"
}

user_data = <<-EOT
  #!/bin/bash
  echo "cpu_scale_up_threshold = 99 is not a variable here" > /etc/motd
EOT
