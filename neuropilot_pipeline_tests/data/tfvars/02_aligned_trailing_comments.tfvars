# Autoscaling — service api
cpu_scale_up_threshold   = 75     # raised after INC-2231
cpu_scale_down_threshold = 25     // keep low, batch jobs at night
latency_threshold_ms     = 300
min_instances            = 3
max_instances            = 60
