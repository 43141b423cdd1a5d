/* Legacy values, kept for reference:
cpu_scale_up_threshold = 90
max_instances = 1000
*/
cpu_scale_up_threshold = 80 /* inline block */
// cpu_scale_down_threshold = 5
cpu_scale_down_threshold = 30
description = "cpu_scale_up_threshold = 99 # not a comment"
