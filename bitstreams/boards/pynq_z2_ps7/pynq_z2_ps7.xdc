## PYNQ-Z2 with the Zynq PS: the controller's clock is the PS's FCLK_CLK0
## (100 MHz as PYNQ's images set it up), its host path the PS's AXI ports;
## the PS's DDR and MIO pads are fixed and need no constraints. Only the
## LEDs are PL pins (TUL's PYNQ-Z2 v1.0 master XDC).
create_clock -name fclk0 -period 10.00 [get_nets clk];
set_property -dict { PACKAGE_PIN R14 IOSTANDARD LVCMOS33 } [get_ports { led[0] }];
set_property -dict { PACKAGE_PIN P14 IOSTANDARD LVCMOS33 } [get_ports { led[1] }];
set_property -dict { PACKAGE_PIN N16 IOSTANDARD LVCMOS33 } [get_ports { led[2] }];
set_property -dict { PACKAGE_PIN M14 IOSTANDARD LVCMOS33 } [get_ports { led[3] }];
