cpu_scale_up_threshold = 82.5
enable_autoscaling     = true
latency_threshold_ms   = 2.5e2
