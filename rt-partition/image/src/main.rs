//! The Bulkhead RT partition image: the RT kernel (`bulkhead-rt`) and the applications of
//! the default image: the latency measurement, the demo control loop, the echo task, the
//! serial echo driver, the HPET device-latency measurement, the NIC's cyclic frame exchange
//! and the status report. The build tool makes images
//! with more applications the same way (`cargo xtask build --rt-app PATH`): this file is all
//! an image is.
#![no_std]
#![no_main]

bulkhead_rt::applications!(
    bulkhead_rt_app_latency::APP,
    bulkhead_rt_app_control::APP,
    bulkhead_rt_app_echo::APP,
    bulkhead_rt_app_serial::APP,
    bulkhead_rt_app_hpet::APP,
    bulkhead_rt_app_nic::APP,
    bulkhead_rt_app_status::APP
);
