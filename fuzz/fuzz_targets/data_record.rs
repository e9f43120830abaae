#![no_main]
//! A data record as the coordinator receives it unauthenticated (UDP datagrams and
//! `IngestRecords`): the header and its varints first (to find the epoch key), then the AEAD.
use flashgate_fuzz::device;
use flashgate_protocol::data_stream::{epoch_key, open_in_place, Direction, RecordHeader};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((header, len)) = RecordHeader::decode(data) {
        assert!(len <= data.len());
        flashgate_fuzz::check_codec!(RecordHeader, &data[..len]);
        let key = epoch_key(&device::DEVICE_KEY, Direction::Up, header.epoch);
        let mut record = data.to_vec();
        if let Ok(opened) = open_in_place(&key, &mut record) {
            assert!(opened.body.end <= record.len());
        }
    }
});
