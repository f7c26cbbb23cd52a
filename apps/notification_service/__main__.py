from notification_service.main import main

main()
