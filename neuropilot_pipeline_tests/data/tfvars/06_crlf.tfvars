cpu_scale_up_threshold = 80
# windows line endings
cpu_scale_down_threshold = 30
region = "eu-west-1"
