"""nova-network: FlatDHCPManager and the Linux bridge/dnsmasq driver it uses."""
